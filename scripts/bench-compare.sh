#!/usr/bin/env bash
# Roster vs Parse Server on this machine, back to back, in one command (issue 7):
#   1. installation creates against Parse Server (PostgreSQL, indexes on installationId,
#      deviceToken and channels) and `register` against Roster, same load generator, same
#      concurrency and duration;
#   2. a push to an audience of AUDIENCE iOS installations through Parse's APNs adapter and a
#      broadcast to as many APNs installations through Roster, both into the same loopback APNs
#      stand-in behind the same TLS front;
# then prints the ratios. Parse is installed from npm into a scratch directory (not the repo).
#
# Needs: cargo, node 20.19+ with npm, openssl, psql, a PostgreSQL on 127.0.0.1:5432 with trust
# auth for user postgres. Environment knobs (defaults in brackets):
#   STORE [sqlite]  CONCURRENCY [64]  DURATION [15]  WARMUP [3]  AUDIENCE [100000]
#   SKIP_BUILD [0]  PARSE_VERSION [9.10.0]  SCRATCH [${TMPDIR:-/tmp}/roster-bench-compare]  PG [postgres://postgres@127.0.0.1:5432]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

STORE=${STORE:-sqlite}
CONCURRENCY=${CONCURRENCY:-64}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
AUDIENCE=${AUDIENCE:-100000}
PARSE_VERSION=${PARSE_VERSION:-9.10.0}
SCRATCH=${SCRATCH:-${TMPDIR:-/tmp}/roster-bench-compare}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
PARSE_PORT=${PARSE_PORT:-1337}
PARSE_DB=roster_bench_parse

mkdir -p "$SCRATCH"
OUT="$SCRATCH/results"
mkdir -p "$OUT"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

echo "==> machine: $(nproc) cores, $(uptime)"

if [ "${SKIP_BUILD:-0}" = 1 ]; then
  echo "==> using the release binaries already built (SKIP_BUILD=1)"
else
  echo "==> building roster and roster-bench (release)"
  cargo build --release -q -p roster-cli -p roster-bench
fi
BENCH="$ROOT/target/release/roster-bench"

echo "==> parse-server $PARSE_VERSION from npm into $SCRATCH/parse"
mkdir -p "$SCRATCH/parse"
if [ ! -x "$SCRATCH/parse/node_modules/.bin/parse-server" ] ||
   ! grep -q "\"version\": \"$PARSE_VERSION\"" "$SCRATCH/parse/node_modules/parse-server/package.json"; then
  (cd "$SCRATCH/parse" && { [ -f package.json ] || echo '{"name":"roster-bench-parse","private":true}' > package.json; } &&
   npm install --no-audit --no-fund --loglevel=error "parse-server@$PARSE_VERSION")
fi

echo "==> TLS certificate for the APNs stand-in (a throw-away CA and a leaf for 127.0.0.1)"
TLS="$SCRATCH/tls"
mkdir -p "$TLS"
if [ ! -f "$TLS/leaf.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=roster-bench CA" -keyout "$TLS/ca.key" -out "$TLS/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=127.0.0.1" -keyout "$TLS/leaf.key" -out "$TLS/leaf.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$TLS/leaf.ext"
  openssl x509 -req -in "$TLS/leaf.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" -CAcreateserial \
    -days 30 -extfile "$TLS/leaf.ext" -out "$TLS/leaf.pem" 2>/dev/null
fi
# Roster's front serves leaf + CA, and its server trusts that file (SSL_CERT_FILE): the CA in it
# is the root its verifier needs.
cat "$TLS/leaf.pem" "$TLS/ca.pem" > "$TLS/chain.pem"

echo "==> APNs stand-in behind TLS"
"$BENCH" standin --tls-cert "$TLS/leaf.pem" --tls-key "$TLS/leaf.key" > "$SCRATCH/standin.json" 2> "$SCRATCH/standin.log" &
pids+=($!)
for _ in $(seq 1 50); do [ -s "$SCRATCH/standin.json" ] && break; sleep 0.2; done
APNS_ADDRESS=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).apnsTls)' "$SCRATCH/standin.json")
STATS_URL=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).stats)' "$SCRATCH/standin.json")
echo "    TLS at $APNS_ADDRESS, stats at $STATS_URL"

echo "==> Parse Server on PostgreSQL (fresh database $PARSE_DB)"
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $PARSE_DB" -c "CREATE DATABASE $PARSE_DB" >/dev/null
MASTER_KEY=bench-master-$RANDOM$RANDOM
PARSE_MASTER_KEY=$MASTER_KEY PARSE_DATABASE_URI="$PG/$PARSE_DB" PARSE_PORT=$PARSE_PORT PARSE_LOGS="$SCRATCH/parse-logs" \
  APNS_KEY_FILE="$ROOT/crates/roster-push-standins/fixtures/apns-test-key.p8" APNS_ADDRESS=$APNS_ADDRESS \
  node "$ROOT/scripts/parse/make-config.js" > "$SCRATCH/parse-config.json"
# From the scratch directory: Parse writes its start-up warnings to ./logs before it reads
# logsFolder, and the repository is no place for them.
(cd "$SCRATCH" && NODE_EXTRA_CA_CERTS="$TLS/ca.pem" NODE_ENV=production \
  exec "$SCRATCH/parse/node_modules/.bin/parse-server" "$SCRATCH/parse-config.json" > "$SCRATCH/parse.log" 2>&1) &
PARSE_PID=$!
pids+=($PARSE_PID)
PARSE_URL="http://127.0.0.1:$PARSE_PORT/parse"
for _ in $(seq 1 120); do
  curl -sf "$PARSE_URL/health" >/dev/null 2>&1 && break
  kill -0 $PARSE_PID 2>/dev/null || { cat "$SCRATCH/parse.log"; exit 1; }
  sleep 0.5
done
curl -sf "$PARSE_URL/health" >/dev/null || { echo "Parse did not start"; cat "$SCRATCH/parse.log"; exit 1; }
# One create makes Parse create its installation table; then the indexes of a fair deployment.
curl -sf -X POST "$PARSE_URL/installations" -H "X-Parse-Application-Id: roster-bench" \
  -H "X-Parse-REST-API-Key: bench-rest" -H "Content-Type: application/json" \
  -d '{"deviceType":"android","installationId":"00000000-0000-4000-8000-000000000000","deviceToken":"first","channels":["bench"]}' >/dev/null
psql "$PG/$PARSE_DB" -q -f "$ROOT/scripts/parse/indexes.sql"

PARSE_ARGS=(--parse-url "$PARSE_URL" --app-id roster-bench --rest-key bench-rest --master-key "$MASTER_KEY" --parse-pid "$PARSE_PID")
LOAD=(--concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP")

echo "==> 1a. Parse Server: installation creates ($CONCURRENCY connections, ${DURATION}s after ${WARMUP}s warm-up)"
"$BENCH" parse-register "${PARSE_ARGS[@]}" "${LOAD[@]}" --json > "$OUT/parse-register.json"
"$BENCH" parse-register "${PARSE_ARGS[@]}" --concurrency 1 --duration 0 --warmup 0 --quiet >/dev/null 2>&1 || true
echo "==> 1b. Roster: register ($STORE)"
"$BENCH" register --store "$STORE" "${LOAD[@]}" --json > "$OUT/roster-register.json"

echo "==> 2a. Parse Server: push to $AUDIENCE iOS installations"
psql "$PG/$PARSE_DB" -q -v n="$AUDIENCE" -f "$ROOT/scripts/parse/seed-audience.sql"
"$BENCH" parse-push "${PARSE_ARGS[@]}" --stats-url "$STATS_URL" --expect "$AUDIENCE" --json > "$OUT/parse-push.json"
echo "==> 2b. Roster: fan-out to $AUDIENCE APNs installations ($STORE), APNs over the same TLS front"
"$BENCH" fanout --store "$STORE" --installations "$AUDIENCE" --apns-percent 100 \
  --apns-tls-cert "$TLS/chain.pem" --apns-tls-key "$TLS/leaf.key" --json > "$OUT/roster-fanout.json"

kill "$PARSE_PID" 2>/dev/null || true
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $PARSE_DB" >/dev/null 2>&1 || true

echo
echo "==> results (JSON reports in $OUT)"
node - "$OUT" <<'JS'
const fs = require('fs');
const dir = process.argv[2];
const load = (n) => JSON.parse(fs.readFileSync(`${dir}/${n}.json`));
const fig = (r, name) => (r.figures.find((f) => f.name === name) || {}).value;
const pr = load('parse-register'), rr = load('roster-register');
const pp = load('parse-push'), rf = load('roster-fanout');
const row = (what, parse, roster, unit) =>
  console.log(`${what.padEnd(34)} Parse ${fmt(parse).padStart(10)} ${unit.padEnd(6)} Roster ${fmt(roster).padStart(10)} ${unit.padEnd(6)} ratio ${(roster / parse).toFixed(2)}x`);
const fmt = (x) => (typeof x === 'number' ? x.toFixed(x < 100 ? 2 : 0) : String(x));
row('installation creates/s', fig(pr, 'creates/s'), fig(rr, 'registrations/s'), '/s');
row('create p99 latency (lower wins)', fig(pr, 'create latency').p99Ms, fig(rr, 'register latency').p99Ms, 'ms');
row('push notifications/s (end to end)', fig(pp, 'notifications/s end to end'), fig(rf, 'notifications/s end to end'), '/s');
row('push peak RSS (lower wins)', fig(pp, 'Parse peak RSS'), fig(rf, 'server peak RSS'), 'MiB');
const lost = fig(pp, 'pushes lost by Parse');
if (lost) console.log(`Parse lost ${lost} of ${pp.method.dataSize} pushes (its APNs client gave up on them); Roster's deliveries: ${JSON.stringify(fig(rf, 'deliveries'))}`);
const load0 = (r) => r.method.machine.loadAtStart.map((x) => x.toFixed(2)).join(' ');
console.log(`\nload average at the start of each run: parse-register ${load0(pr)}, roster-register ${load0(rr)}, parse-push ${load0(pp)}, roster-fanout ${load0(rf)}`);
JS
