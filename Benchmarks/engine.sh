#!/usr/bin/env bash
# The whole engine on a workload, next to the tools that bound it, in one run.
#
# usage: Benchmarks/engine.sh [WORKLOAD_DIR]
#   WORKLOAD_DIR  a workload (has ORDER.txt), used as it is; without one there, Benchmarks/workload.sh
#                 makes it there with make-workload --scale $SCALE --seed $SEED (default full, 42;
#                 SCALE=small for a 256 MB one). Default: ${TMPDIR:-/tmp}/cairn-workload-$SCALE-$SEED
#   env: CAIRN_BIN=path   a prebuilt release cairn (default: build one)
#
# Measures, with the workload warm in the page cache: push of every directory of ORDER.txt (one
# version each; variants name base@1 as parent), then pull of every version; and on the same files
# `zstd -3 -T0` (compression on all cores) and `sha256sum` (one core). Prints MB/s for each.
set -euo pipefail
SCALE=${SCALE:-full}; SEED=${SEED:-42}
WL=$(realpath -m "${1:-${TMPDIR:-/tmp}/cairn-workload-$SCALE-$SEED}")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$ROOT/Benchmarks/workload.sh" "$WL" "$SCALE" "$SEED"
if [ -z "${CAIRN_BIN:-}" ]; then
    (cd "$ROOT" && swift build -c release --product cairn >&2)
    CAIRN_BIN="$ROOT/.build/release/cairn"
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-engine.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export CAIRN_STORE="$WORK/store"
mapfile -t ORDER < "$WL/ORDER.txt"
bytes=$(find "$WL" -type f -printf '%s\n' | awk '{s+=$1} END{printf "%.0f", s}')
find "$WL" -type f -exec cat {} + > /dev/null
now() { date +%s.%N; }
rate() { python3 -c "import sys; print(f'{int(sys.argv[1]) / 1e6 / (float(sys.argv[3]) - float(sys.argv[2])):8.0f} MB/s  ({float(sys.argv[3]) - float(sys.argv[2]):.2f} s)')" "$bytes" "$1" "$2"; }

"$CAIRN_BIN" init > /dev/null
t0=$(now)
for d in "${ORDER[@]}"; do
    parent=(); [ "$d" != base ] && parent=(--parent base@1)
    "$CAIRN_BIN" push "$WL/$d" --model "$d" "${parent[@]}" > /dev/null
done
t1=$(now)
for d in "${ORDER[@]}"; do "$CAIRN_BIN" pull "$d" --out "$WORK/out/$d" > /dev/null; done
t2=$(now)
for d in "${ORDER[@]}"; do diff -r -q "$WL/$d" "$WORK/out/$d" > /dev/null || { echo "pull of $d differs" >&2; exit 1; }; done
rm -rf "$WORK/out"
t3=$(now)
find "$WL" -type f -print0 | sort -z | xargs -0 cat | zstd -3 -T0 -q -c > /dev/null
t4=$(now)
find "$WL" -type f -print0 | xargs -0 sha256sum > /dev/null
t5=$(now)
stored=$(du -sb --apparent-size "$CAIRN_STORE" | cut -f1)
echo "workload $WL: $((bytes / 1000000)) MB in ${#ORDER[@]} directories; $(nproc) cores"
echo "cairn push (all versions)   $(rate "$t0" "$t1")   stored $((stored / 1000000)) MB"
echo "cairn pull (all versions)   $(rate "$t1" "$t2")"
echo "zstd -3 -T0 (same bytes)    $(rate "$t3" "$t4")"
echo "sha256sum (same files)      $(rate "$t4" "$t5")"
