#!/bin/bash
# Benchmark `vma extract -r` (restore into a qcow2 image through QEMU's
# block layer) against `qemu-img convert -O qcow2` of the same data, side by
# side in one run, everything on tmpfs.  Prints a markdown table: median
# wall time of REPEAT runs, throughput, the ratio and peak RSS.
#
# The restore is timed as a management tool does it: `qemu-img create` of
# the target, then `vma extract -r <map>` (map flag 0: a new image reads as
# zeroes).  convert creates its target itself.  Both skip the holes.
#
# Usage: bench/bench-vma-restore.sh [QEMU build dir]
#        (default /var/tmp/vma-qemu/qemu/build; needs vma and qemu-img there)
# Env:   REPEAT (default 5), BENCH_DIR (default a new dir under /dev/shm)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=$(realpath "${1:-/var/tmp/vma-qemu/qemu/build}")
VMA=$BUILD/vma
QEMU_IMG=$BUILD/qemu-img
REPEAT=${REPEAT:-5}
DIR=${BENCH_DIR:-$(mktemp -d /dev/shm/vma-restore-bench.XXXXXX)}
trap 'rm -rf "$DIR"' EXIT

for b in "$VMA" "$QEMU_IMG"; do
    [ -x "$b" ] || { echo "bench-vma-restore: $b not found" >&2; exit 1; }
done

# shellcheck source=bench/bench-lib.sh
. bench/bench-lib.sh     # the cwd is the repo root

# bench_image <label> <raw image> <size MiB> <data MiB>
bench_image() {
    local label=$1 img=$2 size_mib=$3 data_mib=$4
    local rs_t=() cv_t=() rs_rss=0 cv_rss=0
    "$VMA" create "$DIR/a.vma" -d "format=raw:drive-scsi0=$img"
    echo "format=qcow2:0:drive-scsi0=$DIR/restored.qcow2" >"$DIR/map"
    cat "$img" "$DIR/a.vma" >/dev/null
    # Each timed command first gets its output removed, and the order
    # alternates between rounds, so neither always runs on freshly freed
    # memory.
    for ((i = 0; i < REPEAT; i++)); do
        local which
        for which in $( ((i % 2)) && echo "convert restore" || echo "restore convert"); do
            if [ "$which" = restore ]; then
                rm -rf "$DIR/restored.qcow2" "$DIR/x"
                time_cmd rs sh -c '"$1" create -q -f qcow2 "$2" "$3" &&
                                   "$4" extract "$5" -r "$6" "$7"' sh \
                    "$QEMU_IMG" "$DIR/restored.qcow2" "${size_mib}M" \
                    "$VMA" "$DIR/a.vma" "$DIR/map" "$DIR/x"
                rs_t+=("$rs_s")
                ((rs_kb > rs_rss)) && rs_rss=$rs_kb
            else
                rm -f "$DIR/converted.qcow2"
                time_cmd cv "$QEMU_IMG" convert -f raw -O qcow2 "$img" \
                    "$DIR/converted.qcow2"
                cv_t+=("$cv_s")
                ((cv_kb > cv_rss)) && cv_rss=$cv_kb
            fi
        done
    done
    # Same result, or the figures mean nothing
    "$QEMU_IMG" compare -q -f raw -F qcow2 "$img" "$DIR/restored.qcow2"
    "$QEMU_IMG" compare -q -f qcow2 -F qcow2 "$DIR/converted.qcow2" \
        "$DIR/restored.qcow2"
    local rs cv
    rs=$(median "${rs_t[@]}"); cv=$(median "${cv_t[@]}")
    printf '| %s | %.2f s (%.0f MiB/s) | %.2f s (%.0f MiB/s) | %.2fx | %.1f / %.1f MiB |\n' \
        "$label" "$rs" "$(echo "$data_mib / ($rs + 0.001)" | bc -l)" \
        "$cv" "$(echo "$data_mib / ($cv + 0.001)" | bc -l)" \
        "$(echo "$rs / ($cv + 0.001)" | bc -l)" \
        "$(echo "$rs_rss / 1024" | bc -l)" "$(echo "$cv_rss / 1024" | bc -l)"
    rm -rf "$DIR/a.vma" "$DIR/restored.qcow2" "$DIR/converted.qcow2" "$DIR/x"
}

echo "vma restore benchmark: $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r), REPEAT=$REPEAT, on tmpfs"
echo
echo "| image | vma extract -r (qcow2) | qemu-img convert -O qcow2 | ratio | peak RSS vma / convert |"
echo "|---|---|---|---|---|"
make_image "$DIR/2g.raw" 2048 64       # 1 GiB random, 1 GiB holes
bench_image "2 GiB (1 GiB random, 1 GiB holes)" "$DIR/2g.raw" 2048 1024
rm -f "$DIR/2g.raw"
