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
for ((i = 0; i < REPEAT; i++)); do
    rm -rf "$DIR/x"
    time_cmd full "$VMA" extract "$DIR/full.vma" "$DIR/x"
    rm -rf "$DIR/x"
    time_cmd chain "$VMA" extract "${chain[@]}" "$DIR/x"
    cmp "$DIR/expected.raw" "$DIR/x/disk-drive-scsi0.raw"
    rm -rf "$DIR/x" "$DIR/merged.vma"
    time_cmd merge "$VMA" merge "${chain[@]}" -o "$DIR/merged.vma"
    full_t+=("$full_s"); chain_t+=("$chain_s"); merge_t+=("$merge_s")
    ((full_kb > full_rss)) && full_rss=$full_kb
    ((chain_kb > chain_rss)) && chain_rss=$chain_kb
    ((merge_kb > merge_rss)) && merge_rss=$merge_kb
done
"$VMA" extract "$DIR/merged.vma" "$DIR/x" >/dev/null
cmp "$DIR/expected.raw" "$DIR/x/disk-drive-scsi0.raw"
rm -rf "$DIR/x"

full=$(median "${full_t[@]}"); ch=$(median "${chain_t[@]}"); mg=$(median "${merge_t[@]}")
full_mib=$(( $(stat -c %s "$DIR/full.vma") / 1048576 ))
merged_mib=$(( $(stat -c %s "$DIR/merged.vma") / 1048576 ))
echo "disk $SIZE dense, $INCS incrementals with $PERCENT% of the clusters each" \
     "($((inc_bytes / 1048576)) MiB in all), $(nproc) cores, median of $REPEAT"
echo
echo "| what | time | vs full alone | peak RSS |"
echo "|---|---|---|---|"
printf '| extract full alone (%d MiB archive) | %.2f s | 1.00x | %.1f MiB |\n' \
    "$full_mib" "$full" "$(echo "$full_rss / 1024" | bc -l)"
printf '| extract full + %d incrementals | %.2f s | %.2fx | %.1f MiB |\n' \
    "$INCS" "$ch" "$(echo "$ch / $full" | bc -l)" "$(echo "$chain_rss / 1024" | bc -l)"
printf '| merge full + %d incrementals -> %d MiB archive | %.2f s (%.0f MiB/s written) | %.2fx | %.1f MiB |\n' \
    "$INCS" "$merged_mib" "$mg" "$(echo "$merged_mib / $mg" | bc -l)" \
    "$(echo "$mg / $full" | bc -l)" "$(echo "$merge_rss / 1024" | bc -l)"
