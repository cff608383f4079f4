#!/usr/bin/env bash
# Server benchmarks, all on loopback in one run:
#   1. "what is production" lookups: wrk, 64 connections, 2 threads, with a bearer token;
#      requests/s and p50/p99 latency.
#   2. push and pull of one model directory: locally (--store) and through `cairn serve`
#      (--remote, a new model on the server and an empty client cache), in MB/s of the directory's
#      size; REPEAT runs each (default 3), interleaved, median and best.
#
# usage: Benchmarks/server.sh [WORKDIR]      (default /tmp/cairn-server-bench; needs ~4 GB)
# env:   DURATION=10 (seconds of wrk), CONNECTIONS=64, MODEL_DIR=<dir to push> (default: the base
#        model of the full-scale workload, seed 1, that Benchmarks/workload.sh makes in
#        WORKDIR/workload with make-workload unless it is there), SCRATCH=.build-server
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${1:-/tmp/cairn-server-bench}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
SCRATCH=${SCRATCH:-.build-server}
PORT=${PORT:-18471}
mkdir -p "$WORK"

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
scripts/install-deps.sh
swift build -c release --product cairn --scratch-path "$SCRATCH" >&2
CAIRN="$ROOT/$SCRATCH/release/cairn"

if [ -z "${MODEL_DIR:-}" ]; then
    Benchmarks/workload.sh "$WORK/workload" full 1
    MODEL_DIR="$WORK/workload/base"
fi
BYTES=$(du -sb "$MODEL_DIR" | cut -f1)
echo "model directory: $MODEL_DIR ($BYTES bytes)"

now() { date +%s.%N; }
mbps() { python3 -c "print(f'{$BYTES / ($2 - $1) / 1e6:.1f}')"; }
# Before each timed run: the source in the page cache, earlier writes flushed, and 1 GiB of page
# cache written and freed. On a VM the first touch of a never-used guest page costs the host too:
# writing 225 MB through the page cache took 0.56 s of CPU time the first time and 0.04 s once
# freed pages were reused (dd, this machine), and a run that happened to get fresh pages was up to
# twice as slow. Freed pages first, every run, local and remote alike.
RECYCLE_MB=${RECYCLE_MB:-1024}
settle() {
    find "$1" -type f -exec cat {} + >/dev/null
    dd if=/dev/zero of="$WORK/recycle" bs=4M count=$((RECYCLE_MB / 4)) 2>/dev/null
    rm -f "$WORK/recycle"
    sync
}

# Each run (REPEAT, default 3): a local push and a remote push of the model directory, then a
# local and a remote pull of it, interleaved so that both see the same state of the machine; fresh
# stores, a new server and an empty client cache each time. The table gives the median and the
# best run, and the median of the runs' own remote/local ratios.
REPEAT=${REPEAT:-3}
stats() { python3 -c "import statistics,sys; v=sorted(float(x) for x in sys.argv[1:]); print(f'{statistics.median(v):.1f} (best {v[-1]:.1f})')" "$@"; }
median() { python3 -c "import statistics,sys; print(f'{statistics.median(float(x) for x in sys.argv[1:]):.1f}')" "$@"; }
ratios() { python3 -c "import statistics,sys; n=len(sys.argv)//2; l=[float(x) for x in sys.argv[1:n+1]]; r=[float(x) for x in sys.argv[n+1:]]; q=sorted(b/a for a,b in zip(l,r)); print(f'{100*statistics.median(q):.0f}% (runs: ' + ', '.join(f'{100*x:.0f}%' for x in q) + ')')" "$@"; }

# Each remote run: a server on a new, empty store (its first start prints an admin token).
SERVER=""
stop_server() {
    if [ -n "$SERVER" ]; then kill -TERM "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
    SERVER=""
}
trap stop_server EXIT
start_server() {
    stop_server
    rm -rf "$WORK/remote"
    "$CAIRN" init --store "$WORK/remote" >/dev/null
    "$CAIRN" serve --store "$WORK/remote" --port "$PORT" --log-level warning >"$WORK/serve.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 1 100); do
        grep -q "listening on" "$WORK/serve.log" 2>/dev/null && break
        sleep 0.1
    done
    TOKEN=$(sed -n 's/.*export CAIRN_TOKEN=//p' "$WORK/serve.log")
    URL="http://127.0.0.1:$PORT"
    R=(--remote "$URL" --token "$TOKEN")
}

LOCAL_PUSHES=(); LOCAL_PULLS=(); REMOTE_PUSHES=(); REMOTE_PULLS=()
ROUNDTRIP=byte-exact
for i in $(seq 1 "$REPEAT"); do
    rm -rf "$WORK/local" "$WORK/out-local" "$WORK/out-remote" "$WORK/cache"
    "$CAIRN" init --store "$WORK/local" >/dev/null
    start_server

    settle "$MODEL_DIR"
    t0=$(now); "$CAIRN" push "$MODEL_DIR" --model bench --store "$WORK/local" --json >/dev/null; t1=$(now)
    LOCAL_PUSHES+=("$(mbps "$t0" "$t1")")
    settle "$MODEL_DIR"
    t0=$(now); PUSHED=$("$CAIRN" push "$MODEL_DIR" --model bench "${R[@]}" --json); t1=$(now)
    REMOTE_PUSHES+=("$(mbps "$t0" "$t1")")
    SENT=$(echo "$PUSHED" | python3 -c "import json,sys; print(json.load(sys.stdin)['transferred_bytes'])")

    settle "$WORK/local/config.json"
    t0=$(now); "$CAIRN" pull bench@1 --out "$WORK/out-local" --store "$WORK/local" >/dev/null; t1=$(now)
    LOCAL_PULLS+=("$(mbps "$t0" "$t1")")
    settle "$WORK/local/config.json"
    t0=$(now); "$CAIRN" pull bench@1 --out "$WORK/out-remote" --cache "$WORK/cache" "${R[@]}" >/dev/null; t1=$(now)
    REMOTE_PULLS+=("$(mbps "$t0" "$t1")")
    diff -r "$MODEL_DIR" "$WORK/out-remote" >/dev/null || ROUNDTRIP=MISMATCH
done
rm -rf "$WORK/out-local" "$WORK/out-remote" "$WORK/cache"
LOCAL_PUSH=$(median "${LOCAL_PUSHES[@]}"); REMOTE_PUSH=$(median "${REMOTE_PUSHES[@]}")
LOCAL_PULL=$(median "${LOCAL_PULLS[@]}"); REMOTE_PULL=$(median "${REMOTE_PULLS[@]}")

# "What is production": one GET per request, 64 connections.
"$CAIRN" promote bench@1 --to staging "${R[@]}" >/dev/null
"$CAIRN" promote bench@1 --to production "${R[@]}" >/dev/null
curl -sf -H "Authorization: Bearer $TOKEN" "$URL/v1/models/bench/versions/production" >/dev/null
wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Authorization: Bearer $TOKEN" \
    "$URL/v1/models/bench/versions/production" >"$WORK/wrk.txt"
RPS=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt")
P50=$(awk '$1 == "50%" {print $2}' "$WORK/wrk.txt")
P99=$(awk '$1 == "99%" {print $2}' "$WORK/wrk.txt")
ERRORS=$(grep -E "Non-2xx|Socket errors" "$WORK/wrk.txt" || true)

pct() { python3 -c "print(f'{100 * $1 / $2:.0f}%')"; }
echo
echo "| measurement | result |"
echo "|---|---|"
echo "| lookups of MODEL@production, $CONNECTIONS connections, ${DURATION}s | $RPS requests/s, p50 $P50, p99 $P99 ${ERRORS:+($ERRORS)} |"
echo "| push, local store | $(stats "${LOCAL_PUSHES[@]}") MB/s |"
echo "| push, remote (loopback) | $(stats "${REMOTE_PUSHES[@]}") MB/s: $(pct "$REMOTE_PUSH" "$LOCAL_PUSH") of local; per run $(ratios "${LOCAL_PUSHES[@]}" "${REMOTE_PUSHES[@]}"); $SENT bytes of chunks sent |"
echo "| pull, local store | $(stats "${LOCAL_PULLS[@]}") MB/s |"
echo "| pull, remote (loopback, empty cache) | $(stats "${REMOTE_PULLS[@]}") MB/s: $(pct "$REMOTE_PULL" "$LOCAL_PULL") of local; per run $(ratios "${LOCAL_PULLS[@]}" "${REMOTE_PULLS[@]}"); $ROUNDTRIP |"
