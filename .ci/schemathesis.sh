#!/usr/bin/env bash
# Schemathesis against the OpenAPI document the app serves (/api/v2/openapi.json), every
# request signed with a real API key (.ci/schemathesis_hooks.py). The app (debug build) runs on
# its own SQLite file in a temporary directory, with a project and funded balances created
# through the CLI, so withdrawals and exchanges can succeed as well as be refused.
#
# Phases examples, coverage and fuzzing; at most ST_MAX_EXAMPLES cases per operation in the
# fuzzing phase (default 250; about a minute). Every schemathesis 4 check runs (no 5xx, status
# codes, content types, response headers and bodies against the document, schema-invalid
# requests refused, missing headers, unsupported methods and their Allow header) except two:
# positive_data_acceptance (a schema-valid request can still be a business refusal, such as an
# unknown currency) and ignored_auth (the hook signs the security headers a case sends, so its
# "invalid auth" cases would arrive validly signed; tests/api covers refused signatures).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

ST_VERSION=4.32.5
TARGET="$(realpath "${CARGO_TARGET_DIR:-target}")"
VENV="$TARGET/schemathesis-venv"
MAX_EXAMPLES="${ST_MAX_EXAMPLES:-250}"

if ! "$VENV/bin/st" --version 2>/dev/null | grep -q "version $ST_VERSION\$"; then
  echo "== installing schemathesis $ST_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$ST_VERSION"
fi

echo "== cargo build (countersign)"
cargo build --bin countersign
BIN="$TARGET/debug/countersign"

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export COUNTERSIGN_DATABASE_URL="sqlite://$WORK/countersign.db?mode=rwc"
COUNTERSIGN_SECRET_KEY="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
export COUNTERSIGN_SECRET_KEY
export COUNTERSIGN_LISTEN="127.0.0.1:$PORT"
export COUNTERSIGN_LOG="${COUNTERSIGN_LOG:-warn}"
export COUNTERSIGN_SANDBOX__CONFIRM_DELAY_SECS=1

"$BIN" project create --name "Schemathesis" --primary-email st@example.test >"$WORK/creds.json"
field() { python3 -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$WORK/creds.json" "$1"; }
PROJECT="$(field project_id)"
for funds in BTC:100 LTC:1000 ETH:1000 USDTE:100000 USDTT:100000 TRX:1000000 TON:100000 SBX:1000000 EUR:1000000 USD:1000000; do
  "$BIN" balance credit --project "$PROJECT" --currency "${funds%%:*}" --amount "${funds#*:}" >/dev/null
done

"$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/api/v2/openapi.json" >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log"; exit 1; }
  sleep 0.2
done

echo "== schemathesis $ST_VERSION against http://127.0.0.1:$PORT/api/v2/openapi.json"
status=0
# Run from the temporary directory, so that schemathesis' example database stays there.
(cd "$WORK" && CS_BASE_URL="http://127.0.0.1:$PORT" CS_API_KEY="$(field api_key)" CS_API_SECRET="$(field api_secret)" \
  PYTHONPATH="$ROOT/.ci${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=schemathesis_hooks \
  "$VENV/bin/st" run "http://127.0.0.1:$PORT/api/v2/openapi.json" \
  --phases examples,coverage,fuzzing \
  --checks all --exclude-checks positive_data_acceptance,ignored_auth \
  --max-examples "$MAX_EXAMPLES" \
  --workers 2 \
  --request-timeout 10 \
  --suppress-health-check too_slow) 2>&1 | tee "$WORK/st.log" \
  || status=$?

if grep -qiE 'panicked|internal error' "$WORK/server.log"; then
  echo "the server logged errors:" >&2
  grep -iE 'panicked|internal error' "$WORK/server.log" | head -20 >&2
  status=1
fi
# One plain closing line with the figures.
summary="$(grep -E '^ *[0-9]+ generated' "$WORK/st.log" | tail -1 || true)"
passed="$(grep -oE '[0-9]+ passed' <<<"$summary" | grep -oE '[0-9]+' || echo 0)"
failed="$(grep -oE '[0-9]+ unique failures' <<<"$summary" | grep -oE '[0-9]+' || echo 0)"
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "schemathesis: $passed passed, $failed failed"
exit "$status"
