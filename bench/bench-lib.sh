# Shell helpers shared by the benchmark scripts (sourced, not run).
# The caller sets DIR, a scratch directory.

# make_image <path> <size MiB> <data MiB every 128 MiB>: random data, holes
make_image() {
    local path=$1 size_mib=$2 data_mib=$3
    truncate -s "${size_mib}M" "$path"
    for ((off = 0; off < size_mib; off += 128)); do
        head -c "${data_mib}M" /dev/urandom |
            dd of="$path" bs=1M seek="$off" conv=notrunc status=none
    done
}

# time_cmd <out var prefix> <cmd...>: sets <prefix>_s (wall seconds) and
# <prefix>_kb (peak RSS)
time_cmd() {
    local prefix=$1; shift
    local tfile=$DIR/time.out
    /usr/bin/time -f '%e %M' -o "$tfile" "$@" >/dev/null
    read -r "${prefix}_s" "${prefix}_kb" <"$tfile"
}

median() {
    printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
