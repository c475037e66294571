#!/bin/bash
# Start a private one-node Ceph cluster for the tests and benchmarks:
#
#   tests/ceph/start.sh <dir>      (the directory must not exist yet)
#
# One monitor, one manager and one OSD (memstore: the objects live in the
# OSD's memory, nothing to format), auth none, on 127.0.0.1 with a free port
# above 40000 (never Ceph's defaults), all state, logs and sockets in <dir>.
# Returns once the OSD is up and the pool "rbd" (size 1, application rbd)
# serves I/O; prints how long that took.  Then:
#
#   <dir>/ceph.conf    the config every client uses (ceph -c, rbd -c, QEMU's
#                      rbd driver conf=)
#   <dir>/pids         the daemons' PIDs: tests/ceph/stop.sh <dir> ends them
#
# CEPH_MEMSTORE_BYTES caps the OSD's memory store (default 6 GiB; memory is
# only used for data actually written).  On failure the daemons already
# started are stopped again (<dir> and its logs stay) and the exit status
# is non-zero.
# Needs root for the package install (scripts/install-ceph-deps.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

DIR=${1:?usage: tests/ceph/start.sh <dir>}
MEMSTORE_BYTES=${CEPH_MEMSTORE_BYTES:-$((6 << 30))}
POOL=rbd
WAIT_SECONDS=${CEPH_START_TIMEOUT:-120}

say() { echo "ceph-start: $*" >&2; }

"$ROOT/scripts/install-ceph-deps.sh"

if [ -e "$DIR" ]; then
    say "$DIR exists; give a new directory"
    exit 1
fi
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
mkdir -p "$DIR/run" "$DIR/log" "$DIR/mon.a" "$DIR/mgr.x" "$DIR/osd.0"
CONF=$DIR/ceph.conf
start_us=${EPOCHREALTIME/./}

# A free TCP port on 127.0.0.1 for the monitor; the daemons' own ports are
# the 100 above it.  (Two clusters at once - tests and a benchmark - pick
# different ones.)
PORT=$(python3 - <<'EOF'
import random, socket
ports = list(range(40000, 45000, 200))
random.shuffle(ports)
for p in ports:
    s = [socket.socket() for _ in range(2)]
    try:
        s[0].bind(("127.0.0.1", p)); s[1].bind(("127.0.0.1", p + 1))
        print(p); break
    except OSError:
        pass
    finally:
        for x in s: x.close()
EOF
)
[ -n "$PORT" ] || { say "no free port"; exit 1; }

FSID=$(python3 -c 'import uuid; print(uuid.uuid4())')
cat >"$CONF" <<EOF
# Test cluster made by tests/ceph/start.sh; stop it with tests/ceph/stop.sh $DIR
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$PORT
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
ms bind port min = $((PORT + 1))
ms bind port max = $((PORT + 100))
auth cluster required = none
auth service required = none
auth client required = none
run dir = $DIR/run
log file = $DIR/log/\$name.log
# one OSD: pools of one replica, placed on it without host separation
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
# auth is none: the warning about cephx global_id reclaim does not apply
mon warn on insecure global id reclaim allowed = false
# the tests' images are written with a few GiB on one machine
mon osd full ratio = 0.97
mon osd backfillfull ratio = 0.96
mon osd nearfull ratio = 0.95

[mon]
mon data = $DIR/mon.\$id
admin socket = $DIR/run/\$name.asok

[mgr]
mgr data = $DIR/mgr.\$id
admin socket = $DIR/run/\$name.asok
# no dashboard, prometheus, ... : only what "ceph status" needs
mgr initial modules =

[osd]
osd data = $DIR/osd.\$id
admin socket = $DIR/run/\$name.asok
osd objectstore = memstore
memstore device bytes = $MEMSTORE_BYTES
# the OSD would otherwise try to register object classes with the monitor
osd class update on start = false
osd crush update on start = true
EOF

# Started daemons' PIDs, one per line: stop.sh reads them
: >"$DIR/pids"
fail() {
    say "FAILED: $*; logs in $DIR/log"
    tail -n 5 "$DIR"/log/*.log >&2 2>/dev/null || true
    "$HERE/stop.sh" --keep "$DIR" || true
    exit 1
}
# whatever else fails from here on: the daemons started so far go too
trap 'fail "command failed at line $LINENO"' ERR
# start <log name> <daemon> <args>...: run a daemon in the foreground (-f),
# in the background, in its own session (the caller's Ctrl-C does not reach
# it; stop.sh does), and record its PID
start() {
    local name=$1; shift
    setsid "$@" -f -c "$CONF" >"$DIR/log/$name.out" 2>&1 </dev/null &
    echo $! >>"$DIR/pids"
}
ceph_cmd() { timeout 30 ceph -c "$CONF" --connect-timeout 10 "$@"; }

monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$PORT]" \
    "$DIR/monmap" >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" >"$DIR/log/mon-mkfs.out" 2>&1 ||
    fail "ceph-mon --mkfs"
start mon.a ceph-mon -i a
ceph_cmd status >/dev/null || fail "the monitor does not answer"

start mgr.x ceph-mgr -i x

OSD_UUID=$(python3 -c 'import uuid; print(uuid.uuid4())')
OSD_ID=$(ceph_cmd osd new "$OSD_UUID") || fail "ceph osd new"
[ "$OSD_ID" = 0 ] || fail "expected osd.0, got osd.$OSD_ID"
ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" \
    >"$DIR/log/osd-mkfs.out" 2>&1 || fail "ceph-osd --mkfs"
start osd.0 ceph-osd -i 0

# Wait until the OSD is up and in, then make the pool
deadline=$((SECONDS + WAIT_SECONDS))
until ceph_cmd osd dump 2>/dev/null | grep -q '^osd\.0 up  *in '; do
    [ $SECONDS -lt $deadline ] || fail "osd.0 not up after ${WAIT_SECONDS}s"
    sleep 0.5
done
ceph_cmd osd pool create "$POOL" 8 8 >/dev/null 2>&1 || fail "pool create"
ceph_cmd osd pool application enable "$POOL" rbd >/dev/null 2>&1 ||
    fail "pool application enable"
# The pool is ready when an object can be written and read back (its PGs
# are active); rbd's own pool init needs that too
until timeout 10 rados -c "$CONF" -p "$POOL" put start-probe "$CONF" 2>/dev/null &&
      timeout 10 rados -c "$CONF" -p "$POOL" stat start-probe >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "pool $POOL does not serve I/O after ${WAIT_SECONDS}s"
    sleep 0.5
done
rados -c "$CONF" -p "$POOL" rm start-probe
timeout 30 rbd -c "$CONF" pool init "$POOL" || fail "rbd pool init"

ms=$(( (${EPOCHREALTIME/./} - start_us) / 1000 ))
printf 'ceph-start: cluster up in %d.%ds: %s (mon 127.0.0.1:%s, pool %s)\n' \
    $((ms / 1000)) $((ms % 1000 / 100)) "$CONF" "$PORT" "$POOL" >&2
