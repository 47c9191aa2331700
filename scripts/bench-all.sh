#!/usr/bin/env bash
# Every roster-bench scenario on each store, one after the other, as docs/benchmarks.md "How to
# rerun" lists them: the full run behind that page's tables, in one command. Each report is kept
# as JSON in $OUT (its method included: machine, load, commit, sizes), and a summary of the
# headline figures is printed at the end. The Parse Server comparison is its own command
# (scripts/bench-compare.sh), run after this one with COMPARE=1.
#
# Needs: cargo, a PostgreSQL on 127.0.0.1:5432 with trust auth for user postgres (for the
# postgres store), python3 for the summary. Environment knobs (defaults in brackets):
#   STORES ["sqlite postgres"]  RUNS [2] (runs of register and mobile-mix)
#   PEOPLE [1000000] (audience, fanout and footprint on SQLite: the issue's sizes)
#   PG_PEOPLE [100000] (the same on PostgreSQL: 1M takes hours to seed there)
#   COMPARE [0]  SKIP_BUILD [0]  OUT [${TMPDIR:-/tmp}/roster-bench-all]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

STORES=${STORES:-sqlite postgres}
RUNS=${RUNS:-2}
PEOPLE=${PEOPLE:-1000000}
PG_PEOPLE=${PG_PEOPLE:-100000}
OUT=${OUT:-${TMPDIR:-/tmp}/roster-bench-all}
mkdir -p "$OUT"

if [ "${SKIP_BUILD:-0}" = 1 ]; then
  echo "==> using the release binaries already built (SKIP_BUILD=1)"
else
  echo "==> building roster and roster-bench (release)"
  cargo build --release -q -p roster-cli -p roster-bench
fi
BENCH=${BENCH:-$ROOT/target/release/roster-bench}
echo "==> machine: $(nproc) cores, $(uptime); reports in $OUT"

n=0
run() { # run NAME ARGS...: one report, kept as $OUT/NN-NAME.json
  local name=$1
  shift
  n=$((n + 1))
  local file
  file=$(printf '%s/%02d-%s.json' "$OUT" "$n" "$name")
  echo "==> $(date +%H:%M:%S) $name: roster-bench $*"
  "$BENCH" "$@" --quiet --json > "$file"
}

for store in $STORES; do
  size=$PEOPLE
  [ "$store" = postgres ] && size=$PG_PEOPLE
  for i in $(seq 1 "$RUNS"); do
    run "register-$store-$i" register --store "$store"
    run "mobile-mix-$store-$i" mobile-mix --store "$store" --devices 1000 --warmup 5
  done
  run "fanout-$store-100000" fanout --store "$store" --installations 100000
  [ "$size" != 100000 ] && run "fanout-$store-$size" fanout --store "$store" --installations "$size"
  run "audience-$store-$size" audience --store "$store" --people "$size"
  run "footprint-$store-$size" footprint --store "$store" --people "$size"
done

echo "==> summary"
python3 - "$OUT" <<'EOF'
import json, pathlib, sys

def fig(report, name):
    for f in report["figures"]:
        if f["name"] == name:
            return f["value"]
    return None

def latency(v):
    return f"p50 {v['p50Ms']:.1f} ms, p99 {v['p99Ms']:.1f} ms" if isinstance(v, dict) else "?"

def extra(report, per):
    out = ""
    cpu = fig(report, f"server CPU per {per}")
    if isinstance(cpu, (int, float)):
        out += f", server CPU {cpu:.0f} µs/{per}"
    held = fig(report, "store writer held per write transaction")
    if isinstance(held, (int, float)):
        out += f", writer {held:.0f} µs/write"
    return out

for path in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    r = json.loads(path.read_text())
    m = r["method"]
    head = f"{r['scenario']:<11} {m['store']:<9} {m.get('dataSize') or '':>8}  commit {m['machine'].get('commit') or '?'}"
    s = r["scenario"]
    if s == "register":
        line = f"{fig(r, 'registrations/s'):,.0f}/s, {latency(fig(r, 'register latency'))}{extra(r, 'registration')}"
    elif s == "mobile-mix":
        line = f"{fig(r, 'requests/s'):,.0f}/s, {latency(fig(r, 'all latency'))}{extra(r, 'request')}"
    elif s == "fanout":
        line = f"{fig(r, 'notifications/s end to end'):,.0f} notifications/s{extra(r, 'notification')}"
    elif s == "audience":
        parts = []
        for f in r["figures"]:
            v = f["value"]
            if isinstance(v, dict) and "previewMs" in v:
                res = v.get("resolutionMs")
                parts.append(f"{f['name']}: {v['installations']:,} installations, preview {v['previewMs']['median']:.1f} ms"
                             + (f", resolved {res / 1000:.1f} s" if isinstance(res, (int, float)) else ""))
        line = "; ".join(parts)
    elif s == "footprint":
        line = (f"idle RSS {fig(r, 'idle RSS'):.1f} MiB, {fig(r, 'bytes on disk per person (one installation)'):,.0f} bytes"
                f" on disk per person")
    else:
        line = "; ".join(f"{f['name']} {f['value']}{(' ' + f['unit']) if f.get('unit') else ''}"
                         for f in r["figures"] if not isinstance(f["value"], (dict, list)))[:300]
    print(f"{head}  {line}")
EOF

if [ "${COMPARE:-0}" = 1 ]; then
  SKIP_BUILD=1 bash scripts/bench-compare.sh
fi
