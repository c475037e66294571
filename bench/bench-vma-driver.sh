#!/bin/bash
# Benchmark the read-only vma block driver (block/vma.c), side by side in
# one run with the same file opened as raw:
#
#   open    qemu-img info of the disk through the driver (reads and checks
#           every extent header, builds the index) vs qemu-img info -f raw
#           of the archive file, page cache warm: median wall time of REPEAT
#           runs and peak RSS.  Archive: one 64 GiB disk (DENSE_GIB) with
#           every block stored, the layout of a dense disk's archive (58
#           full clusters per extent), its data areas left as holes
#           (bench/make-dense-vma.py --holes): its headers are where a real
#           64 GiB archive has them, on a few MB of disk.
#   read    sequential read of a whole disk with real data (READ_GIB,
#           default 8) through the driver vs reading the archive file
#           itself: qemu-img bench (2 MiB requests, queue depth 8) on the
#           vma node and on the file as raw, and dd bs=2M of the file;
#           page cache warm, median of REPEAT runs.
#
# Usage: bench/bench-vma-driver.sh [QEMU build dir]
#        (default /var/tmp/vma-qemu/qemu/build; needs qemu-img with vma)
# Env:   REPEAT (default 5), DENSE_GIB (64), READ_GIB (8),
#        BENCH_DIR (default a new dir under /var/tmp: READ_GIB of disk)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=$(realpath "${1:-/var/tmp/vma-qemu/qemu/build}")
QEMU_IMG=$BUILD/qemu-img
REPEAT=${REPEAT:-5}
DENSE_GIB=${DENSE_GIB:-64}
READ_GIB=${READ_GIB:-8}
DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/vma-driver-bench.XXXXXX)}
trap 'rm -rf "$DIR"' EXIT

[ -x "$QEMU_IMG" ] || { echo "bench-vma-driver: $QEMU_IMG not found" >&2; exit 1; }
"$QEMU_IMG" --help | grep -qw vma ||
    { echo "bench-vma-driver: $QEMU_IMG has no vma driver" >&2; exit 1; }

# shellcheck source=bench/bench-lib.sh
. bench/bench-lib.sh     # the cwd is the repo root

vma_opts() { echo "driver=vma,file.filename=$1,device=drive-scsi0"; }

# --- open ------------------------------------------------------------------
dense=$DIR/dense.vma
python3 bench/make-dense-vma.py "${DENSE_GIB}G" "$dense" --holes
clusters=$((DENSE_GIB * 16384))
# The index: 8 bytes per stored cluster, a bit per cluster, a 4-byte rank
# per 2048 clusters
index_bytes=$((clusters * 8 + clusters / 8 + (clusters + 2047) / 2048 * 4))
"$QEMU_IMG" info --image-opts "$(vma_opts "$dense")" >/dev/null   # warm
op_t=() raw_t=() op_rss=0 raw_rss=0
for ((i = 0; i < REPEAT; i++)); do
    time_cmd op "$QEMU_IMG" info --image-opts "$(vma_opts "$dense")"
    time_cmd raw "$QEMU_IMG" info -f raw "$dense"
    op_t+=("$op_s"); raw_t+=("$raw_s")
    ((op_kb > op_rss)) && op_rss=$op_kb
    ((raw_kb > raw_rss)) && raw_rss=$raw_kb
done
op_med=$(median "${op_t[@]}"); raw_med=$(median "${raw_t[@]}")

# --- sequential read -------------------------------------------------------
data=$DIR/data.vma
python3 bench/make-dense-vma.py "${READ_GIB}G" "$data"
cat "$data" >/dev/null
count=$((READ_GIB * 512))           # 2 MiB requests
bytes=$((READ_GIB << 30))
rd_t=() rf_t=() dd_t=()
for ((i = 0; i < REPEAT; i++)); do
    time_cmd rd "$QEMU_IMG" bench -t writeback -c "$count" -s 2M -d 8 \
        --image-opts "$(vma_opts "$data")"
    time_cmd rf "$QEMU_IMG" bench -t writeback -c "$count" -s 2M -d 8 \
        -f raw "$data"
    time_cmd dd dd if="$data" of=/dev/null bs=2M status=none
    rd_t+=("$rd_s"); rf_t+=("$rf_s"); dd_t+=("$dd_s")
done
rd_med=$(median "${rd_t[@]}"); rf_med=$(median "${rf_t[@]}")
dd_med=$(median "${dd_t[@]}")
# dd reads the whole file: its extent headers too
file_bytes=$(stat -c %s "$data")

mbs() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "| open, ${DENSE_GIB} GiB dense disk ($clusters clusters) | wall (median of $REPEAT) | peak RSS |"
echo "|---|---|---|"
echo "| qemu-img info, vma driver | ${op_med} s | $((op_rss / 1024)) MiB |"
echo "| qemu-img info -f raw, same file | ${raw_med} s | $((raw_rss / 1024)) MiB |"
echo "| difference: the open | $(awk -v a="$op_med" -v b="$raw_med" 'BEGIN { printf "%.2f", a - b }') s | $(((op_rss - raw_rss) / 1024)) MiB (index after open: $((index_bytes / 1024)) KiB) |"
echo
echo "| sequential read, ${READ_GIB} GiB of data | wall (median of $REPEAT) | MiB/s | vs the file as raw |"
echo "|---|---|---|---|"
echo "| qemu-img bench, vma driver | ${rd_med} s | $(mbs "$bytes" "$rd_med") | $(ratio "$rf_med" "$rd_med") |"
echo "| qemu-img bench -f raw, archive file | ${rf_med} s | $(mbs "$bytes" "$rf_med") | 1.00 |"
echo "| dd bs=2M, archive file | ${dd_med} s | $(mbs "$file_bytes" "$dd_med") | $(ratio "$rf_med" "$dd_med") |"
