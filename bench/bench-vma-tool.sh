#!/bin/bash
# Benchmark `vma create` and `vma extract` against `cp --sparse=always` of
# the same image, side by side in one run, on tmpfs (everything in page
# cache).  Prints a markdown table: median wall time of REPEAT runs, the
# ratio to cp, and peak RSS.
#
# Usage: bench/bench-vma-tool.sh [vma binary]   (default build/vma)
# Env:   REPEAT (default 5), BENCH_DIR (default a new dir under /dev/shm)
set -euo pipefail
cd "$(dirname "$0")/.."
VMA=$(realpath "${1:-build/vma}")
REPEAT=${REPEAT:-5}
DIR=${BENCH_DIR:-$(mktemp -d /dev/shm/vma-bench.XXXXXX)}
trap 'rm -rf "$DIR"' EXIT

# shellcheck source=bench/bench-lib.sh
. bench/bench-lib.sh     # the cwd is the repo root

# bench_image <label> <image>
bench_image() {
    local label=$1 img=$2
    local cp_t=() cr_t=() ex_t=() cpx_t=() cr_rss=0 ex_rss=0
    cat "$img" >/dev/null
    # Each timed command first gets its output removed, and the order of
    # vma and cp alternates between rounds, so neither always runs on
    # freshly freed memory.
    cp --sparse=always "$img" "$DIR/ref.raw"
    for ((i = 0; i < REPEAT; i++)); do
        local pair
        for pair in $( ((i % 2)) && echo "vma cp" || echo "cp vma"); do
            if [ "$pair" = cp ]; then
                rm -f "$DIR/copy.raw"
                time_cmd cp cp --sparse=always "$img" "$DIR/copy.raw"
                rm -f "$DIR/copy.raw"
                time_cmd cpx cp --sparse=always "$DIR/ref.raw" "$DIR/copy.raw"
                rm -f "$DIR/copy.raw"
            else
                rm -rf "$DIR/a.vma" "$DIR/x"
                time_cmd cr "$VMA" create "$DIR/a.vma" -d "format=raw:disk=$img"
                time_cmd ex "$VMA" extract "$DIR/a.vma" "$DIR/x"
                cmp "$img" "$DIR/x/disk-disk.raw"
                rm -rf "$DIR/x"
            fi
        done
        cp_t+=("$cp_s"); cr_t+=("$cr_s"); cpx_t+=("$cpx_s"); ex_t+=("$ex_s")
        ((cr_kb > cr_rss)) && cr_rss=$cr_kb
        ((ex_kb > ex_rss)) && ex_rss=$ex_kb
    done
    rm -f "$DIR/ref.raw"
    local cp cr cpx ex
    cp=$(median "${cp_t[@]}"); cr=$(median "${cr_t[@]}")
    cpx=$(median "${cpx_t[@]}"); ex=$(median "${ex_t[@]}")
    local archive_mib
    archive_mib=$(( $(stat -c %s "$DIR/a.vma") / 1048576 ))
    printf '| %s | create | %.2f s | %.2f s | %.2fx | %.1f MiB |\n' \
        "$label" "$cr" "$cp" "$(echo "$cr / ($cp + 0.001)" | bc -l)" \
        "$(echo "$cr_rss / 1024" | bc -l)"
    printf '| %s | extract | %.2f s | %.2f s | %.2fx | %.1f MiB |\n' \
        "$label" "$ex" "$cpx" "$(echo "$ex / ($cpx + 0.001)" | bc -l)" \
        "$(echo "$ex_rss / 1024" | bc -l)"
    echo "|  | (archive $archive_mib MiB) | | | | |"
}

echo "vma tool benchmark: $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r), REPEAT=$REPEAT, on tmpfs"
echo
echo "| image | operation | vma | cp --sparse=always | ratio | vma peak RSS |"
echo "|---|---|---|---|---|---|"
make_image "$DIR/2g.raw" 2048 64       # 1 GiB random, 1 GiB holes
bench_image "2 GiB (1 GiB random, 1 GiB holes)" "$DIR/2g.raw"
rm -f "$DIR/2g.raw"
make_image "$DIR/16g.raw" 16384 1      # 128 MiB random, the rest holes
bench_image "16 GiB (128 MiB random, rest holes)" "$DIR/16g.raw"
