#!/usr/bin/env bash
# Checks the deploy/ kit without building or running an image: every YAML file parses, every
# COUNTERSIGN_* variable the kit sets is a real setting, and, with each tool that is installed,
# `docker compose config`, `caddy validate`, `systemd-analyze verify` and `kubectl kustomize`.
# A missing tool skips its check (named at the end); a failing check fails the script.
# The TOML files are checked by `cargo test --lib config` (the real config loader).
set -euo pipefail
cd "$(dirname "$0")/.."

skipped=()
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

have_yaml() { python3 -c 'import yaml' 2>/dev/null; }
if ! have_yaml; then
  python3 -m pip install -q pyyaml >/dev/null 2>&1 || true
fi

echo "== YAML files parse"
if have_yaml; then
  python3 - <<'EOF'
import pathlib, sys, yaml
files = sorted(p for p in pathlib.Path("deploy").rglob("*") if p.suffix in (".yaml", ".yml"))
for f in files:
    try:
        docs = [d for d in yaml.safe_load_all(f.read_text()) if d is not None]
    except yaml.YAMLError as e:
        sys.exit(f"{f}: {e}")
    if not docs:
        sys.exit(f"{f}: no document")
    print(f"   {f}: {len(docs)} document(s)")
EOF
else
  skipped+=("YAML parsing (no PyYAML)")
fi

echo "== COUNTERSIGN_* variables are settings"
if have_yaml; then
  python3 - <<'EOF'
# Every COUNTERSIGN_<KEY> the kit sets must name a key of deploy/countersign.toml, which the
# Rust test proves names every setting: Countersign refuses unknown COUNTERSIGN_* variables.
import pathlib, re, sys, tomllib, yaml

def switch_on(text):  # the Rust test's rule: `# key = ...` and `# [table]` lose their `# `
    out = []
    for line in text.splitlines():
        rest = line[2:] if line.startswith("# ") else None
        if rest is not None and (re.match(r'\[[A-Za-z"]', rest) or re.match(r"[A-Za-z0-9_]+ = ", rest)):
            line = rest
        out.append(line)
    return "\n".join(out)

def paths(d, prefix=()):
    for k, v in d.items():
        p = prefix + (k,)
        yield p
        if isinstance(v, dict):
            yield from paths(v, p)

keys = {".".join(p) for p in paths(tomllib.loads(switch_on(pathlib.Path("deploy/countersign.toml").read_text())))}

def strings(node):
    if isinstance(node, dict):
        for k, v in node.items():
            yield str(k)
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)
    elif isinstance(node, str):
        yield node

found = {}
for f in sorted(pathlib.Path("deploy").rglob("*")):
    if not f.is_file() or f.suffix == ".toml" or f.name == "check.sh":
        continue
    text = f.read_text()
    if f.suffix in (".yaml", ".yml"):
        # Values and keys only: comments may name variables that must not be set.
        texts = [s for d in yaml.safe_load_all(text) if d is not None for s in strings(d)]
    else:
        texts = [l for l in text.splitlines() if not l.lstrip().startswith("#")]
    for t in texts:
        for name in re.findall(r"COUNTERSIGN_[A-Z0-9_]+", t):
            found.setdefault(name, set()).add(str(f))

bad = []
for name, where in sorted(found.items()):
    key = ".".join(name[len("COUNTERSIGN_"):].lower().split("__"))
    if key not in keys:
        bad.append(f"{name} (in {', '.join(sorted(where))}) is no setting")
    else:
        print(f"   {name} -> {key}")
if bad:
    sys.exit("\n".join(bad))
EOF
else
  skipped+=("COUNTERSIGN_* names (no PyYAML)")
fi

echo "== docker compose config"
compose=()
if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
fi
if [ ${#compose[@]} -gt 0 ]; then
  # The example .env must be enough for compose.yaml (its required variables are all there).
  "${compose[@]}" -f deploy/compose.yaml --env-file deploy/.env.example config -q
  echo "   ${compose[*]}: deploy/compose.yaml is valid"
else
  skipped+=("compose (neither docker compose nor docker-compose)")
fi

echo "== caddy validate"
if command -v caddy >/dev/null 2>&1; then
  # Its local CA and state go to a throwaway directory.
  if ! out=$(XDG_DATA_HOME="$tmp/caddy" XDG_CONFIG_HOME="$tmp/caddy" HOME="$tmp" \
    caddy validate --adapter caddyfile --config deploy/Caddyfile 2>&1); then
    echo "$out" >&2
    exit 1
  fi
  echo "   deploy/Caddyfile is valid"
else
  skipped+=("Caddyfile (no caddy)")
fi

echo "== systemd-analyze verify"
if command -v systemd-analyze >/dev/null 2>&1; then
  # The binary is not installed here: verify copies whose commands point at /bin/true, so that
  # any other complaint (unknown directive, bad value, missing dependency) fails the check.
  mkdir "$tmp/units"
  cp deploy/systemd/*.service "$tmp/units/"
  sed -i 's#^\(Exec[A-Za-z]*=\)/usr/local/bin/countersign .*#\1/bin/true#' "$tmp/units/"*.service
  if ! out=$(systemd-analyze verify "$tmp/units/"*.service 2>&1) || [ -n "$out" ]; then
    echo "$out" >&2
    exit 1
  fi
  echo "   deploy/systemd/*.service verified"
else
  skipped+=("systemd units (no systemd-analyze)")
fi

echo "== kustomize build"
kustomize_out="$tmp/kubernetes.yaml"
if command -v kubectl >/dev/null 2>&1; then
  kubectl kustomize deploy/kubernetes >"$kustomize_out"
elif command -v kustomize >/dev/null 2>&1; then
  kustomize build deploy/kubernetes >"$kustomize_out"
else
  kustomize_out=""
  skipped+=("Kubernetes (neither kubectl nor kustomize)")
fi
if [ -n "$kustomize_out" ]; then
  if have_yaml; then
    python3 - "$kustomize_out" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
for k in ("Namespace", "ConfigMap", "Deployment", "Service", "Job", "PodDisruptionBudget"):
    if not any(x.startswith(k + "/") for x in kinds):
        sys.exit(f"kustomize output has no {k}: {kinds}")
print("   " + ", ".join(kinds))
EOF
  else
    echo "   deploy/kubernetes builds"
  fi
fi

if [ ${#skipped[@]} -gt 0 ]; then
  printf 'deploy/check.sh: skipped %s\n' "${skipped[@]}"
fi
echo "deploy/check.sh: every check that could run passed"
