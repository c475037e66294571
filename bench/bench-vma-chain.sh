#!/bin/bash
# Benchmark restoring a backup chain: a full archive of a dense 4 GiB disk
# plus 7 incrementals (1% of the clusters changed in each), against the
# full archive alone, side by side in one run; and `vma merge` of the same
# chain into one full archive.  Everything is in the page cache (the scratch
# dir is on /var/tmp, RAM is large enough); the figures are CPU and copy
# costs, not disk speed.  Prints a markdown table: median wall time of
# REPEAT runs and peak RSS.  Each result is compared with the expected disk.
#
# Usage: bench/bench-vma-chain.sh [vma binary]   (default build/vma)
# Env:   REPEAT (default 3), SIZE (default 4G), INCS (default 7),
#        PERCENT (default 1), BENCH_DIR (default a new dir under /var/tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
VMA=$(realpath "${1:-build/vma}")
REPEAT=${REPEAT:-3}
SIZE=${SIZE:-4G}
INCS=${INCS:-7}
PERCENT=${PERCENT:-1}
DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/vma-bench-chain.XXXXXX)}
trap 'rm -rf "$DIR"' EXIT

# shellcheck source=bench/bench-lib.sh
. bench/bench-lib.sh     # the cwd is the repo root

python3 bench/make-vma-chain.py "$SIZE" "$INCS" "$PERCENT" "$DIR"
chain=("$DIR/full.vma")
for ((k = 1; k <= INCS; k++)); do chain+=("$DIR/inc$k.vma"); done
cat "${chain[@]}" "$DIR/expected.raw" >/dev/null
inc_bytes=$(( $(cat "${chain[@]:1}" | wc -c) ))

full_t=() chain_t=() merge_t=() full_rss=0 chain_rss=0 merge_rss=0
full_c=() chain_c=() merge_c=()
# time_cpu <prefix> <cmd...>: <prefix>_s (wall s), <prefix>_cpu (user+sys
# s), <prefix>_kb (peak RSS)
time_cpu() {
    local prefix=$1; shift
    local u sy
    /usr/bin/time -f '%e %U %S %M' -o "$DIR/time.out" "$@" >/dev/null
    read -r "${prefix}_s" u sy "${prefix}_kb" <"$DIR/time.out"
    printf -v "${prefix}_cpu" '%s' "$(echo "$u + $sy" | bc -l)"
}

# Every command ends with fsyncs (extract: each file and the directory,
# merge: the archive): a sync before each one keeps the previous one's
# writeback out of its time, and the order alternates between rounds.
run_full() {
    rm -rf "$DIR/x"; sync
    time_cpu full "$VMA" extract "$DIR/full.vma" "$DIR/x"
}
run_chain() {
    rm -rf "$DIR/x"; sync
    time_cpu chain "$VMA" extract "${chain[@]}" "$DIR/x"
    cmp "$DIR/expected.raw" "$DIR/x/disk-drive-scsi0.raw"
}
run_merge() {
    rm -rf "$DIR/x" "$DIR/merged.vma"; sync
    time_cpu merge "$VMA" merge "${chain[@]}" -o "$DIR/merged.vma"
}
for ((i = 0; i < REPEAT; i++)); do
    if ((i % 2)); then run_merge; run_chain; run_full
    else run_full; run_chain; run_merge; fi
    full_t+=("$full_s"); chain_t+=("$chain_s"); merge_t+=("$merge_s")
    full_c+=("$full_cpu"); chain_c+=("$chain_cpu"); merge_c+=("$merge_cpu")
    ((full_kb > full_rss)) && full_rss=$full_kb
    ((chain_kb > chain_rss)) && chain_rss=$chain_kb
    ((merge_kb > merge_rss)) && merge_rss=$merge_kb
done
rm -rf "$DIR/x"
"$VMA" extract "$DIR/merged.vma" "$DIR/x" >/dev/null
cmp "$DIR/expected.raw" "$DIR/x/disk-drive-scsi0.raw"
rm -rf "$DIR/x"

full=$(median "${full_t[@]}"); ch=$(median "${chain_t[@]}"); mg=$(median "${merge_t[@]}")
fc=$(median "${full_c[@]}"); cc=$(median "${chain_c[@]}"); mc=$(median "${merge_c[@]}")
full_mib=$(( $(stat -c %s "$DIR/full.vma") / 1048576 ))
merged_mib=$(( $(stat -c %s "$DIR/merged.vma") / 1048576 ))
echo "disk $SIZE dense, $INCS incrementals with $PERCENT% of the clusters each" \
     "($((inc_bytes / 1048576)) MiB in all), $(nproc) cores, median of $REPEAT;" \
     "wall time includes the final fsyncs (to disk)"
echo
echo "| what | wall | vs full alone | CPU (user+sys) | vs full alone | peak RSS |"
echo "|---|---|---|---|---|---|"
printf '| extract full alone (%d MiB archive) | %.2f s | 1.00x | %.2f s | 1.00x | %.1f MiB |\n' \
    "$full_mib" "$full" "$fc" "$(echo "$full_rss / 1024" | bc -l)"
printf '| extract full + %d incrementals | %.2f s | %.2fx | %.2f s | %.2fx | %.1f MiB |\n' \
    "$INCS" "$ch" "$(echo "$ch / $full" | bc -l)" "$cc" "$(echo "$cc / $fc" | bc -l)" \
    "$(echo "$chain_rss / 1024" | bc -l)"
printf '| merge full + %d incrementals -> %d MiB archive (%.0f MiB/s written) | %.2f s | %.2fx | %.2f s | %.2fx | %.1f MiB |\n' \
    "$INCS" "$merged_mib" "$(echo "$merged_mib / $mg" | bc -l)" "$mg" \
    "$(echo "$mg / $full" | bc -l)" "$mc" "$(echo "$mc / $fc" | bc -l)" \
    "$(echo "$merge_rss / 1024" | bc -l)"
