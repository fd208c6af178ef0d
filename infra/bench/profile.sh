#!/usr/bin/env bash
# Instructions per request of the proxy, by function, under callgrind (load-independent, unlike
# wall-clock timings on a shared machine). Builds the `profiling` cargo profile (release with
# symbols), starts the mock provider and `proxy --http` with memory stores and every check on
# (as `make bench` does) under `valgrind --tool=callgrind`, warms it up, zeroes the counters,
# sends N requests (default 1000, open loop at 100 req/s), dumps, and prints the inclusive
# instruction counts per request of the functions named in infra/bench/stages.txt.
#
#   infra/bench/profile.sh [N] [OUT_DIR]     # OUT_DIR keeps callgrind.out for callgrind_annotate
#
# STREAM_PACE_MS=P profiles streamed requests instead (`"stream": true` with usage, against a mock
# sending one SSE event every P ms): it also prints the instructions per streamed event (the
# whole process's count over every event relayed, the first of each stream included) and the
# streaming rows of stages.py (relay, response filter, stream redactor).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000}
OUT=${2:-$(mktemp -d /tmp/tollgate-profile-XXXXXX)}
mkdir -p "$OUT"
# PROXY_BIN=path profiles that proxy binary (e.g. a saved "before" build) without building.
if [ -z "${PROXY_BIN:-}" ]; then
  cargo build --profile profiling -q -p tollgate-proxy -p tollgate-mock-provider -p tollgate-bench
fi
BIN=target/profiling
PROXY_BIN=${PROXY_BIN:-$BIN/proxy}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_listening() { # file
  for _ in $(seq 1 600); do
    if grep -q '^LISTENING ' "$1" 2>/dev/null; then grep -m1 '^LISTENING ' "$1" | cut -d' ' -f2; return; fi
    sleep 0.1
  done
  echo "did not start: $1" >&2; exit 1
}
"$BIN/mock-provider" --addr 127.0.0.1:0 --no-log >"$OUT/mock.out" 2>"$OUT/mock.err" &
pids+=($!)
MOCK=$(wait_listening "$OUT/mock.out")
PACE=${STREAM_PACE_MS:-}
KEY=$("$BIN/tollgate-bench" seed --upstream "$MOCK" --out "$OUT/seed.json" ${PACE:+--pace-ms "$PACE"})
STREAM_ARGS=()
if [ -n "$PACE" ]; then STREAM_ARGS=(--stream-pace-ms "$PACE" --event-samples "$OUT/events.txt"); fi
TOLLGATE_STORE=memory TOLLGATE_MEMORY_SEED="$OUT/seed.json" RUST_LOG=${RUST_LOG:-warn} \
  valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
  "$PROXY_BIN" --http 127.0.0.1:0 >"$OUT/proxy.out" 2>"$OUT/proxy.err" &
VG=$!
pids+=($VG)
PROXY=$(wait_listening "$OUT/proxy.out")
URL="$PROXY/v1/chat/completions"
"$BIN/tollgate-bench" load --url "$URL" --key "$KEY" --rate 50 --seconds 4 --warmup 50 ${PACE:+--stream-pace-ms "$PACE"} >/dev/null
callgrind_control -z "$VG" >/dev/null
RATE=100
"$BIN/tollgate-bench" load --url "$URL" --key "$KEY" --rate $RATE --seconds $((N / RATE)) --warmup 0 "${STREAM_ARGS[@]}" >"$OUT/load.json"
callgrind_control -d "$VG" >/dev/null
sleep 1
kill "$VG"; wait "$VG" 2>/dev/null || true
DUMP=$(ls -t "$OUT"/callgrind.out.* | head -1)
OK=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ok"])' "$OUT/load.json")
echo "requests answered while counting: $OK (profile: $DUMP)"
python3 infra/bench/stages.py "$DUMP" "$OK"
if [ -n "$PACE" ]; then
  # Every stream's first event is its TTFB sample; the later ones are in events.txt.
  EVENTS=$(( OK + $(wc -l <"$OUT/events.txt") ))
  TOTAL=$(callgrind_annotate "$DUMP" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
  echo "streamed events relayed while counting: $EVENTS ($((EVENTS / OK)) per stream)"
  echo "instructions per stream: $((TOTAL / OK)); per event: $((TOTAL / EVENTS))"
fi
