#!/usr/bin/env bash
# Cairn against restic, borg and casync on one workload, in one run, on this machine.
#
# usage: Benchmarks/compare.sh [WORKLOAD_DIR [OUT_DIR]]
#   WORKLOAD_DIR  a workload (has ORDER.txt), used as it is; without one there, Benchmarks/workload.sh
#                 makes it there with make-workload --scale $SCALE --seed $SEED (default full, 42).
#                 Default: ${TMPDIR:-/tmp}/cairn-workload-$SCALE-$SEED
#   env: PEERS="restic-auto borg casync"   peers to run (those installed); PEERS="" skips them
#        PEERS_SH=../shared/bench/peers.sh  the peers' harness (one repository per tool)
#        CAIRN_BIN=path                     a prebuilt release cairn (default: build one)
#
# Cairn is measured the way peers.sh measures the peers: each directory of ORDER.txt pushed as one
# version into one store (variants with --parent base@1), workload warm in the page cache, every command under /usr/bin/time; then a
# restore of base and of one file of partial-01 (verified with cmp), and a re-push of base
# (already stored). Prints one table with each figure's ratio to the best peer of this run.
set -euo pipefail
SCALE=${SCALE:-full}; SEED=${SEED:-42}
WL=$(realpath -m "${1:-${TMPDIR:-/tmp}/cairn-workload-$SCALE-$SEED}")
OUT=$(realpath -m "${2:-${TMPDIR:-/tmp}/cairn-compare}")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$ROOT/Benchmarks/workload.sh" "$WL" "$SCALE" "$SEED"
PEERS_SH=${PEERS_SH:-$ROOT/../shared/bench/peers.sh}
PEERS=${PEERS-restic-auto borg casync}
mkdir -p "$OUT"
SINGLE_DIR=partial-01; SINGLE_FILE=model-00002-of-00002.safetensors

if [ -z "${CAIRN_BIN:-}" ]; then
    (cd "$ROOT" && swift build -c release --product cairn >&2)
    CAIRN_BIN="$ROOT/.build/release/cairn"
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-compare.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export CAIRN_STORE="$WORK/store"
TSV="$OUT/cairn.tsv"
printf 'step\tlogical_bytes\twall_s\tmaxrss_kb\tstored_bytes\n' > "$TSV"

timed() {  # timed STEP LOGICAL cmd... -> appends a row
    local step=$1 logical=$2; shift 2
    /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" > "$WORK/out" 2> "$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
    read -r wall rss < "$WORK/time"
    printf '%s\t%s\t%s\t%s\t%s\n' "$step" "$logical" "$wall" "$rss" "$(du -sb --apparent-size "$CAIRN_STORE" | cut -f1)" >> "$TSV"
}
lbytes() { find "$@" -type f -printf '%s\n' | awk '{s+=$1} END{printf "%.0f", s}'; }

"$CAIRN_BIN" init > /dev/null
find "$WL" -type f -exec cat {} + > /dev/null   # warm, as peers.sh does
for d in $(cat "$WL/ORDER.txt"); do
    # Each directory is one version; variants of the base name it as their parent (lineage), which
    # lets their changed tensors be stored as deltas against it.
    parent=(); [ "$d" != base ] && parent=(--parent base@1)
    timed "ingest:$d" "$(lbytes "$WL/$d")" "$CAIRN_BIN" push "$WL/$d" --model "$d" "${parent[@]}" --json
done
R="$WORK/restore"
rm -rf "$R"; timed restore_base "$(lbytes "$WL/base")" "$CAIRN_BIN" pull base --out "$R/base"
for f in "$WL"/base/*; do cmp -s "$f" "$R/base/$(basename "$f")" || { echo "restore of base differs: $f" >&2; exit 1; }; done
rm -rf "$R"; timed restore_file "$(stat -c %s "$WL/$SINGLE_DIR/$SINGLE_FILE")" \
    "$CAIRN_BIN" pull "$SINGLE_DIR" --out "$R/$SINGLE_DIR" --include "$SINGLE_FILE"
cmp -s "$R/$SINGLE_DIR/$SINGLE_FILE" "$WL/$SINGLE_DIR/$SINGLE_FILE" || { echo "single-file restore differs" >&2; exit 1; }
[ "$(find "$R" -type f | wc -l)" = 1 ] || { echo "single-file restore wrote more than one file" >&2; exit 1; }
rm -rf "$R"; timed reingest_base "$(lbytes "$WL/base")" "$CAIRN_BIN" push "$WL/base" --model base-again --json

# Peers, in the same run.
if [ -n "$PEERS" ]; then
    avail=""
    for p in $PEERS; do
        case $p in restic-*) t=restic ;; *) t=$p ;; esac
        command -v "$t" > /dev/null && avail="$avail $p"
    done
    if [ -n "$avail" ]; then
        rm -f "$OUT/peers/peers.tsv"
        REPS=${REPS:-1} TOOLS="${avail# }" bash "$PEERS_SH" "$WL" "$OUT/peers" >&2
    fi
fi

python3 - "$TSV" "$OUT/peers/peers.tsv" <<'PY'
import csv, os, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
ingest = [r for r in rows if r["step"].startswith("ingest:")]
get = lambda step: next(r for r in rows if r["step"] == step)
cairn = {
    "ingest_s": sum(float(r["wall_s"]) for r in ingest),
    "restore_s": float(get("restore_base")["wall_s"]),
    "file_s": float(get("restore_file")["wall_s"]),
    "stored": int(ingest[-1]["stored_bytes"]),
    "rss": max(int(r["maxrss_kb"]) for r in rows) / 1024,
}
logical = sum(int(r["logical_bytes"]) for r in ingest)
reingest = get("reingest_base")
peers = {}
if os.path.exists(sys.argv[2]):
    for r in csv.DictReader(open(sys.argv[2]), delimiter="\t"):
        p = peers.setdefault(r["tool"], {"rss": 0.0})
        if r["wall_s"] and r["step"].startswith("ingest:") and r["step"] != "ingest:TOTAL":
            p["rss"] = max(p["rss"], int(r["maxrss_kb"]) / 1024)
        if r["step"] == "ingest:TOTAL":
            p["ingest_s"] = float(r["wall_s"]); p["stored"] = int(r["repo_apparent_bytes"])
        elif r["step"] == "restore_base_warm":
            p["restore_s"] = float(r["wall_s"]); p["rss"] = max(p["rss"], int(r["maxrss_kb"]) / 1024)
        elif r["step"] == "restore_file_warm":
            p["file_s"] = float(r["wall_s"])
cols = [("ingest_s", "ingest s"), ("restore_s", "restore base s"), ("file_s", "one file s"), ("stored", "stored MB"), ("rss", "peak RSS MiB")]
best = {k: min((p[k] for p in peers.values() if k in p), default=None) for k, _ in cols}
def cell(v, k):
    s = f"{v / 1e6:,.1f}" if k == "stored" else f"{v:.2f}" if k != "rss" else f"{v:.0f}"
    return s + (f" ({v / best[k]:.2f}x)" if best[k] and k != "rss" else "")
print(f"workload: {logical / 1e6:,.1f} MB logical, {len(ingest)} directories; ratios are to the best peer of this run")
print("| tool | " + " | ".join(h for _, h in cols) + " |")
print("|---|" + "---|" * len(cols))
print("| cairn | " + " | ".join(cell(cairn[k], k) for k, _ in cols) + " |")
for name, p in sorted(peers.items()):
    print(f"| {name} | " + " | ".join(cell(p[k], k) if k in p else "-" for k, _ in cols) + " |")
print(f"\ncairn ingest {logical / 1e6 / cairn['ingest_s']:,.0f} MB/s; re-ingest of base (already stored) "
      f"{int(reingest['logical_bytes']) / 1e6 / float(reingest['wall_s']):,.0f} MB/s; logical/stored {logical / cairn['stored']:.2f}")
PY
