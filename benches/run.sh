#!/usr/bin/env bash
# Benchmarks (benches/loadgen.rs drives the load):
#  - intake: POST /api/v2/withdrawal/crypto against a bare actix-web + sqlx baseline (one
#    INSERT) in the same run (the baseline first), on an empty and on a prefilled database;
#    then how long the worker takes to pay out the rest;
#  - approvals: owners claiming and approving pending withdrawals through the admin API;
#  - pages: the approval queue and the withdrawals list (with filters) with 1,000,000 rows,
#    signed in;
#  - memory: VmRSS of `countersign serve` idle, and its peak (VmHWM) after the loads;
#  - CPU: milliseconds of CPU per request of the load generator, the server and the local
#    PostgreSQL processes, and how busy the machine was, during each measured load (Linux).
#
# usage: benches/run.sh [N] [C]        N requests (default 20000), C connections (default 32)
# env:   PORT                  server port (default: the first free one from 18080)
#        SKIP_PREFILL=1        skip everything that needs the prefilled database (pages too)
#        PREFILL_COUNT         historical withdrawals to prefill (default 1000000)
#        APPROVALS             decisions in the approval run (default 2000; 0 skips it)
#        APPROVERS             approvers deciding concurrently (default 4)
#        PAGE_LOADS            loads of each page (default 500), PAGE_C connections (default 4)
#        CS_BENCH_PG  postgres://user@host:5432/postgres: also run on PostgreSQL, in a
#                              fresh database bench_<random> that is dropped at the end
#        PG_PREFILL=1          also prefill the PostgreSQL database and load the pages there
#        CS_BIN, LOADGEN_BIN  use these binaries instead of building them
#        COUNTERSIGN_WORKER__ENABLED=false  intake alone, nothing paid out (for comparison)
#        SKIP_SQLITE=1         only the PostgreSQL runs (needs CS_BENCH_PG)
set -euo pipefail

N=${1:-20000}
C=${2:-32}
PREFILL_COUNT=${PREFILL_COUNT:-1000000}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[[ -z ${CS_BIN:-} ]] || CS_BIN=$(realpath "$CS_BIN")
[[ -z ${LOADGEN_BIN:-} ]] || LOADGEN_BIN=$(realpath "$LOADGEN_BIN")
cd "$ROOT"

if [[ -z ${CS_BIN:-} ]]; then
    cargo build --release
    CS_BIN=$ROOT/target/release/countersign
fi
if [[ -z ${LOADGEN_BIN:-} ]]; then
    cargo bench --bench loadgen --no-run
    LOADGEN_BIN=$(cargo bench --bench loadgen --no-run --message-format=json 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "loadgen" \
            and m.get("executable"):
        print(m["executable"])' | tail -n 1)
    [[ -x $LOADGEN_BIN ]] || { echo "run.sh: cannot find the loadgen bench binary" >&2; exit 1; }
fi

cs() { "$CS_BIN" "$@"; }

# json FIELD.PATH: read one JSON object on stdin (the last line that is one) and print a field.
json() {
    python3 -c '
import json, sys
obj = None
for line in sys.stdin:
    line = line.strip()
    if line.startswith("{"):
        try:
            obj = json.loads(line)
        except ValueError:
            pass
if obj is None:
    sys.exit("run.sh: expected a JSON object on stdin")
for key in sys.argv[1].split("."):
    obj = obj[key]
print(obj)' "$1"
}

# Migrate a fresh database and create a funded project with high API limits.
setup_project() {
    cs migrate
    local created
    created=$(cs project create --name Bench --primary-email bench@example.com)
    PROJECT_ID=$(json project_id <<<"$created")
    TARGET_ARGS=(--url "$BASE_URL" --key "$(json api_key <<<"$created")"
        --secret "$(json api_secret <<<"$created")")
    cs balance credit --project "$PROJECT_ID" --currency SBX --amount 100000000
    cs limits set --project "$PROJECT_ID" --scope api --currency SBX \
        --per-operation 100000000 --per-hour 100000000 --per-day 100000000
    # Owners to approve (a withdrawal over a limit needs an owner), and one to load pages.
    PEOPLE=()
    local i made
    for i in $(seq 0 "$APPROVERS"); do
        made=$(cs user create --project "$PROJECT_ID" --email "owner$i@bench.example" \
            --role owner --password-stdin <<<"$PASSWORD")
        PEOPLE+=("owner$i@bench.example,$PASSWORD,$(json otpauth_url <<<"$made")")
    done
}

# rss FIELD: VmRSS or VmHWM of the server, in MB.
rss() {
    awk -v f="$1:" '$1 == f { printf "%.0f", $2 / 1024 }' "/proc/$SERVER_PID/status"
}

# measure_approvals LABEL: pending withdrawals (a per-operation limit below the amount), then
# owners approve them through the admin API.
measure_approvals() {
    [[ $APPROVALS -gt 0 ]] || return 0
    echo "### $1: $APPROVALS approvals by $APPROVERS approvers" >&2
    cs limits set --project "$PROJECT_ID" --scope api --currency SBX --per-operation 0.0001
    local args=() i
    for i in $(seq 1 "$APPROVERS"); do args+=(--person "${PEOPLE[$i]}"); done
    RES=$("$LOADGEN_BIN" approvals -n "$APPROVALS" -c "$C" --json --server-pid "$SERVER_PID" \
        "${TARGET_ARGS[@]}" "${args[@]}")
    SUMMARY+=("$(summary_line "$1, approvals" <<<"$RES")")
    cs limits set --project "$PROJECT_ID" --scope api --currency SBX --per-operation 100000000
}

# measure_pages LABEL: signed-in page loads (the database is prefilled).
measure_pages() {
    echo "### $1: page loads" >&2
    RES=$("$LOADGEN_BIN" pages -n "$PAGE_LOADS" -c "$PAGE_C" --json --url "$BASE_URL" \
        --person "${PEOPLE[0]}" --page /approvals --page /withdrawals \
        --page '/withdrawals?status=confirmed' --page '/withdrawals?status=pending' \
        --page '/withdrawals?address=sbx_bench_addr' --page '/withdrawals?foreign_id=prefill')
    python3 -c '
import json, sys
r = json.loads(sys.stdin.read().strip().splitlines()[-1])
for f in r["pages"]:
    label = sys.argv[1] + ", " + f["label"]
    p50, p99, rps, errors = f["p50_ms"], f["p99_ms"], f["throughput_rps"], f["errors"]
    e = " (%d errors)" % errors if errors else ""
    print("%-52sp50 %.1f ms, p99 %.1f ms, %.0f/s%s" % (label, p50, p99, rps, e))' "$1" <<<"$RES" >"$TMP/pages.txt"
    while IFS= read -r line; do SUMMARY+=("$line"); done <"$TMP/pages.txt"
}

# drained LABEL: waits until the worker has paid out every approved withdrawal (the metrics'
# approved + processing gauges reach 0) and records how long that took after the load ended.
# It looks every half second: a scrape counts what is in flight, and with 20,000 withdrawals
# in flight that is about 30 ms of PostgreSQL's time, which looking every 0.1 s took from the
# worker it was measuring.
drained() {
    local started waited
    if [[ ${COUNTERSIGN_WORKER__ENABLED:-true} == false ]]; then
        SUMMARY+=("$(printf '%-28s%s' "$1, payouts" "none: the worker was off")")
        return 0
    fi
    started=$(date +%s.%N)
    waited=$(python3 -c '
import sys, time, urllib.request
url, started = sys.argv[1], float(sys.argv[2])
for _ in range(1200):
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    left = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(("countersign_withdrawals{status=\"approved\"}",
                                   "countersign_withdrawals{status=\"processing\"}")))
    if left == 0:
        print("%.1f" % (time.time() - started))
        break
    time.sleep(0.5)
else:
    print("more than 600")' "http://127.0.0.1:$METRICS_PORT/metrics" "$started")
    SUMMARY+=("$(printf '%-28s%s' "$1, payouts" "every payout confirmed $waited s after the load ended")")
}

memory_line() {
    SUMMARY+=("$(printf '%-28s%s' "$1, memory" "idle $IDLE_RSS MB; peak $(rss VmHWM) MB after the loads; now $(rss VmRSS) MB")")
}

start_server() {
    "$CS_BIN" serve >>"$TMP/serve.log" 2>&1 & # not via cs(): $! must be the server
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        if curl -fsS --noproxy '*' --max-time 1 -o /dev/null "$BASE_URL/readyz" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            SERVER_PID=
            echo "run.sh: countersign serve exited; its log:" >&2
            tail -n 50 "$TMP/serve.log" >&2
            exit 1
        fi
        sleep 0.2
    done
    echo "run.sh: countersign serve did not answer $BASE_URL/readyz in 60 s" >&2
    tail -n 50 "$TMP/serve.log" >&2
    exit 1
}

stop_server() {
    if [[ -n ${SERVER_PID:-} ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}

# loadgen MODE ARGS...: the human report goes to stderr (the terminal), the JSON line to stdout.
loadgen() {
    local mode=$1
    shift
    "$LOADGEN_BIN" "$mode" -n "$N" -c "$C" --json --server-pid "$SERVER_PID" "$@"
}

# summary_line LABEL: one summary line from a loadgen JSON result on stdin.
summary_line() {
    python3 -c '
import json, sys
r = json.loads(sys.stdin.read().strip().splitlines()[-1])
parts = []
for side in ("target", "baseline"):
    if side in r:
        rps, p99, errors = r[side]["throughput_rps"], r[side]["p99_ms"], r[side]["errors"]
        parts.append(f"{side} {rps:.1f} req/s, p99 {p99:.1f} ms" + (f" ({errors} errors)" if errors else ""))
if "ratio_pct" in r:
    parts.append("target/baseline %.1f%%" % r["ratio_pct"])
print(f"{sys.argv[1]:<28}" + "; ".join(parts))
# CPU per request (Linux): where the time went on each side.
for side in ("target", "baseline"):
    c = r.get(side, {}).get("cpu")
    if c:
        own, server, pg = c["loadgen_ms_per_req"], c["server_ms_per_req"], c["postgres_ms_per_req"]
        busy, cores = c["machine_busy_pct"], c["cores"]
        who = "loadgen+server" if side == "baseline" else "loadgen"
        line = f"{who} {own:.3f}" + ("" if server is None else f", server {server:.3f}")
        line += f", postgres {pg:.3f}"
        pad = " " * 28
        print(f"{pad}{side} cpu ms/request: {line}; machine {busy:.0f}% busy of {cores} cores")' "$1"
}

ratio() { python3 -c 'import sys; print(f"{100 * float(sys.argv[1]) / float(sys.argv[2]):.1f}%")' "$@"; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/countersign-bench.XXXXXX")
SERVER_PID=
PG_ADMIN_URL=${CS_BENCH_PG:-}
PG_DB=

cleanup() {
    set +e
    stop_server
    if [[ -n $PG_DB ]]; then
        psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 ||
            psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $PG_DB" >/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=${PORT:-$(python3 -c '
import socket
for port in range(18080, 18380):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        print(port)
        break
    except OSError:
        pass
    finally:
        s.close()')}
[[ -n $PORT ]] || { echo "run.sh: no free port found" >&2; exit 1; }
BASE_URL=http://127.0.0.1:$PORT
METRICS_PORT=$(python3 -c '
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')

export COUNTERSIGN_LISTEN=127.0.0.1:$PORT
export COUNTERSIGN_METRICS__LISTEN=127.0.0.1:$METRICS_PORT
export COUNTERSIGN_LOG=warn
COUNTERSIGN_SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export COUNTERSIGN_SECRET_KEY

SUMMARY=()
APPROVALS=${APPROVALS:-2000}
APPROVERS=${APPROVERS:-4}
PAGE_LOADS=${PAGE_LOADS:-500}
PAGE_C=${PAGE_C:-4}
PASSWORD=$(python3 -c 'import secrets; print("bench-" + secrets.token_hex(12))')
export COUNTERSIGN_BASE_URL=$BASE_URL

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if [[ ${SKIP_SQLITE:-0} != 1 ]]; then
    echo "### SQLite: intake vs baseline (N=$N, C=$C)" >&2
    export COUNTERSIGN_DATABASE_URL="sqlite://$TMP/bench.db?mode=rwc"
    setup_project
    start_server
    sleep 2
    IDLE_RSS=$(rss VmRSS)
    RES=$(loadgen compare "${TARGET_ARGS[@]}" --baseline-db sqlite)
    SUMMARY+=("$(summary_line "sqlite, empty" <<<"$RES")")
    EMPTY_RPS=$(json target.throughput_rps <<<"$RES")
    drained sqlite
    measure_approvals sqlite

    if [[ ${SKIP_PREFILL:-0} != 1 ]]; then
        echo "### SQLite: intake after prefilling $PREFILL_COUNT withdrawals" >&2
        stop_server
        cs dev prefill --project "$PROJECT_ID" --count "$PREFILL_COUNT"
        start_server
        RES=$(loadgen target "${TARGET_ARGS[@]}")
        SUMMARY+=("$(summary_line "sqlite, $PREFILL_COUNT prefilled" <<<"$RES")")
        drained "sqlite, prefilled"
        FULL_RPS=$(json target.throughput_rps <<<"$RES")
        SUMMARY+=("$(printf '%-28s%s' "prefilled / empty" "$(ratio "$FULL_RPS" "$EMPTY_RPS")")")
        measure_pages "sqlite, $PREFILL_COUNT rows"
    fi
    memory_line sqlite
    stop_server
fi

if [[ -n $PG_ADMIN_URL ]]; then
    echo "### PostgreSQL: intake vs baseline (N=$N, C=$C)" >&2
    PG_DB=bench_$(python3 -c 'import secrets; print(secrets.token_hex(6))')
    psql "$PG_ADMIN_URL" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $PG_DB"
    PG_URL=$(python3 -c '
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$PG_ADMIN_URL" "$PG_DB")
    export COUNTERSIGN_DATABASE_URL=$PG_URL
    setup_project
    start_server
    sleep 2
    IDLE_RSS=$(rss VmRSS)
    RES=$(loadgen compare "${TARGET_ARGS[@]}" --baseline-db "$PG_URL")
    SUMMARY+=("$(summary_line "postgres, empty" <<<"$RES")")
    drained postgres
    measure_approvals postgres
    if [[ ${PG_PREFILL:-0} == 1 ]]; then
        stop_server
        cs dev prefill --project "$PROJECT_ID" --count "$PREFILL_COUNT"
        start_server
        measure_pages "postgres, $PREFILL_COUNT rows"
    fi
    memory_line postgres
    stop_server
fi

echo
echo "== summary (N=$N, C=$C; load average before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)) =="
printf '%s\n' "${SUMMARY[@]}"
