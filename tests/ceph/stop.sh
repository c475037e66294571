#!/bin/bash
# Stop a cluster started by tests/ceph/start.sh, by the PIDs it recorded:
#
#   tests/ceph/stop.sh [--keep] <dir>
#
# SIGTERM, up to 15 s to exit, then SIGKILL.  A PID is signalled only while
# its command line still names <dir>/ceph.conf (never a reused PID).  Then
# <dir> is removed (the OSD's data lived in its memory anyway) unless --keep
# is given.  Safe to call twice.
set -uo pipefail

keep=0
[ "${1:-}" = --keep ] && { keep=1; shift; }
DIR=${1:?usage: tests/ceph/stop.sh [--keep] <dir>}
[ -d "$DIR" ] || exit 0
DIR=$(cd "$DIR" && pwd)

# Is $1 still one of this cluster's daemons?
ours() {
    [ -r "/proc/$1/cmdline" ] &&
        tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$DIR/ceph.conf"
}

pids=()
if [ -f "$DIR/pids" ]; then
    while read -r pid; do
        [ -n "$pid" ] && ours "$pid" && pids+=("$pid")
    done <"$DIR/pids"
fi
for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
for _ in $(seq 150); do
    alive=()
    for pid in "${pids[@]}"; do ours "$pid" && alive+=("$pid"); done
    [ ${#alive[@]} -eq 0 ] && break
    sleep 0.1
done
for pid in "${pids[@]}"; do
    if ours "$pid"; then
        echo "ceph-stop: $pid did not exit on SIGTERM: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null
    fi
done
[ $keep = 1 ] || rm -rf "$DIR"
exit 0
