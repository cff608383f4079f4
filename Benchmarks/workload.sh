#!/usr/bin/env bash
# The benchmarks' workload: makes it in DIR with make-workload (Benchmarks/Benchmarks/MakeWorkload,
# built in release mode), unless DIR already holds a complete workload (make-workload writes
# DIR/ORDER.txt last), which is then used as it is, whatever made it.
#
# usage: Benchmarks/workload.sh DIR [SCALE [SEED]]      SCALE small|full (default full), SEED default 42
#   full: 3.05 GB in 19 directories (a bf16 base, 10 LoRA adapters, 5 partial and 2 full fine-tunes,
#   a re-sharded copy) and DIR/MANIFEST.tsv (SHA-256 of every file); small: 256 MB. Output on stderr.
set -euo pipefail
DIR=$1
SCALE=${2:-full}
SEED=${3:-42}
if [ -f "$DIR/ORDER.txt" ]; then
    echo "workload: using $DIR (has ORDER.txt)" >&2
    exit 0
fi
BENCH=$(cd "$(dirname "$0")" && pwd)
swift build -c release --package-path "$BENCH" --product make-workload >&2
BIN=$(swift build -c release --package-path "$BENCH" --show-bin-path)/make-workload
"$BIN" --out "$DIR" --scale "$SCALE" --seed "$SEED" >&2
