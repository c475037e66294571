#!/bin/bash
# Benchmark backup of an RBD disk and restore into RBD against Ceph's own
# tools, side by side in one run, on a private one-node cluster
# (tests/ceph/start.sh: memstore OSD, 127.0.0.1):
#
#   backup:  QMP `backup` of a VM whose disk is the RBD image, into a VMA
#            file (bench/ceph-backup.py: from `backup` to query-backup done)
#            vs `rbd export` of the same image into a raw file
#   restore: `rbd create` + `vma extract -r` of that archive into the new
#            image (map line 0:drive-rbd0=rbd:<pool>/<image>:conf=...)
#            vs `rbd import` of the raw image
#
# Also the OSD's read/write ops and bytes for each (osd.0 perf counters
# op_r, op_r_out_bytes, op_w, op_in_bytes): how many requests per 4 MiB
# object each side issues.  Results are checked: the archive's disk and the
# restored images equal the source image.
#
# Usage: bench/bench-ceph.sh [QEMU build dir]
#        (default /var/tmp/vma-qemu/qemu/build; needs qemu-system-x86_64,
#        vma and QEMU's python/ next to the build dir)
# Env:   REPEAT (default 5), SIZE_MIB (default 2048, all random data),
#        BENCH_DIR (default a new dir under /var/tmp: files on disk, the
#        OSD's objects in its memory)
# Prints a markdown table: median wall times, throughput, ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=$(realpath "${1:-/var/tmp/vma-qemu/qemu/build}")
VMA=$BUILD/vma
REPEAT=${REPEAT:-5}
SIZE_MIB=${SIZE_MIB:-2048}
DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/vma-ceph-bench.XXXXXX)}
CLUSTER=$DIR/cluster
trap 'tests/ceph/stop.sh "$CLUSTER"; rm -rf "$DIR"' EXIT

for b in "$BUILD/qemu-system-x86_64" "$VMA"; do
    [ -x "$b" ] || { echo "bench-ceph: $b not found" >&2; exit 1; }
done
# shellcheck source=bench/bench-lib.sh
. bench/bench-lib.sh

# The source image, the restore targets being written and some room
CEPH_MEMSTORE_BYTES=$(( (3 * SIZE_MIB + 512) << 20 )) \
    tests/ceph/start.sh "$CLUSTER"
CONF=$CLUSTER/ceph.conf
RBD=(rbd -c "$CONF" --no-progress)

# osd_counters <prefix>: <prefix>_r, <prefix>_rb, <prefix>_w, <prefix>_wb
osd_counters() {
    local vals
    vals=$(ceph -c "$CONF" daemon osd.0 perf dump | python3 -c '
import json, sys
o = json.load(sys.stdin)["osd"]
print(o["op_r"], o["op_r_out_bytes"], o["op_w"], o["op_in_bytes"])')
    read -r "${1}_r" "${1}_rb" "${1}_w" "${1}_wb" <<<"$vals"
}
# per_object <ops> <bytes>: "<ops per 4 MiB object> x <KiB per op>"
per_object() {
    awk -v ops="$1" -v bytes="$2" -v objs=$((SIZE_MIB / 4)) \
        'BEGIN { printf "%.1f x %.0f KiB", ops / objs, ops ? bytes / ops / 1024 : 0 }'
}

echo "bench-ceph: making a ${SIZE_MIB} MiB random image" >&2
make_image "$DIR/src.raw" "$SIZE_MIB" 128
"${RBD[@]}" import "$DIR/src.raw" rbd/src

bk_t=() ex_t=() rs_t=() im_t=()
# Round 0 warms up (the first round is 2-5x slower on both sides: the
# OSD's and the page cache's memory is new) and is not counted
for ((i = 0; i <= REPEAT; i++)); do
    # Alternate the order between rounds
    for which in $( ((i % 2)) && echo "export backup" || echo "backup export"); do
        # each timed command starts with no dirty page cache to write back
        if [ "$which" = backup ]; then
            rm -f "$DIR/a.vma"; sync
            json=$(python3 bench/ceph-backup.py "$BUILD" "$CONF" rbd/src "$DIR/a.vma")
            read -r s ops bytes < <(python3 -c '
import json, sys; j = json.loads(sys.argv[1])
print(j["seconds"], j["read_ops"], j["read_bytes"])' "$json")
            bk_t+=("$s"); bk_io=$(per_object "$ops" "$bytes")
        else
            rm -f "$DIR/export.raw"; sync
            osd_counters c0
            time_cmd ex "${RBD[@]}" export rbd/src "$DIR/export.raw"
            osd_counters c1
            ex_t+=("$ex_s"); ex_io=$(per_object $((c1_r - c0_r)) $((c1_rb - c0_rb)))
        fi
    done
    for which in $( ((i % 2)) && echo "import restore" || echo "restore import"); do
        "${RBD[@]}" rm rbd/dst >/dev/null 2>&1 || true
        rm -rf "$DIR/x"; sync
        osd_counters c0
        if [ "$which" = restore ]; then
            echo "0:drive-rbd0=rbd:rbd/dst:conf=$CONF" >"$DIR/map"
            time_cmd rs sh -c '"$1" -c "$2" create --size "$3" rbd/dst &&
                               "$4" extract "$5" -r "$6" "$7"' sh \
                rbd "$CONF" "${SIZE_MIB}M" "$VMA" "$DIR/a.vma" "$DIR/map" "$DIR/x"
            rs_t+=("$rs_s")
        else
            time_cmd im "${RBD[@]}" import "$DIR/src.raw" rbd/dst
            im_t+=("$im_s")
        fi
        osd_counters c1
        io=$(per_object $((c1_w - c0_w)) $((c1_wb - c0_wb)))
        [ "$which" = restore ] && rs_io=$io || im_io=$io
        # Same result, or the figures mean nothing (once per side)
        if [ "$i" = 0 ]; then
            "${RBD[@]}" export rbd/dst "$DIR/check.raw"
            cmp "$DIR/src.raw" "$DIR/check.raw" ||
                { echo "bench-ceph: $which gave a different image" >&2; exit 1; }
            rm -f "$DIR/check.raw"
        fi
    done
    if [ "$i" = 0 ]; then
        cmp "$DIR/src.raw" "$DIR/export.raw"
        "$VMA" extract "$DIR/a.vma" "$DIR/x"
        cmp "$DIR/src.raw" "$DIR/x/disk-drive-rbd0.raw" ||
            { echo "bench-ceph: the archive differs from the image" >&2; exit 1; }
        rm -rf "$DIR/x"
    fi
done

bk_t=("${bk_t[@]:1}") ex_t=("${ex_t[@]:1}") rs_t=("${rs_t[@]:1}") im_t=("${im_t[@]:1}")

row() {   # row <operation> <ours> <theirs> <our I/O> <their I/O> <their name>
    local a b
    a=$(median "${!2}"); b=$(median "${!3}")
    awk -v op="$1" -v a="$a" -v b="$b" -v mib="$SIZE_MIB" -v io1="$4" \
        -v io2="$5" -v name="$6" 'BEGIN {
        printf "| %s | %.2f s (%.0f MiB/s) | %s: %.2f s (%.0f MiB/s) | %.2fx | %s | %s |\n",
            op, a, mib / a, name, b, mib / b, a / b, io1, io2 }'
}
echo
echo "RBD benchmark: $(date +%F), $(nproc) cores, $(uname -r), REPEAT=$REPEAT, ${SIZE_MIB} MiB random image, memstore OSD"
echo
echo "| operation | ours | Ceph tool | ratio | OSD ops per 4 MiB object, ours | Ceph tool |"
echo "|---|---|---|---|---|---|"
row "backup (QMP \`backup\` to a file)" 'bk_t[@]' 'ex_t[@]' "$bk_io reads" "$ex_io reads" "rbd export"
row "restore (\`vma extract -r\` into RBD)" 'rs_t[@]' 'im_t[@]' "$rs_io writes" "$im_io writes" "rbd import"
echo
echo "all times (after the warm-up round): ${bk_t[*]} | ${ex_t[*]} | ${rs_t[*]} | ${im_t[*]}"
