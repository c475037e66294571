#!/bin/bash
# The Ceph test group: start a private cluster, run tests/ceph/test_rbd.py
# against the patched QEMU in <build dir>, stop the cluster (also when the
# tests fail or are interrupted).
#
#   tests/ceph/run-tests.sh <QEMU build dir>
#
# Last line: "N passed, N failed, N skipped".  If the cluster cannot start,
# every test counts as skipped and the reason is printed.  Needs root.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:?usage: tests/ceph/run-tests.sh <QEMU build dir>}
# Tests in test_rbd.py (counted as skipped when Ceph cannot start)
N_TESTS=$(grep -c '^    def test_' "$HERE/test_rbd.py")

WORK=$(mktemp -d /var/tmp/vma-ceph.XXXXXX)
CLUSTER=$WORK/cluster
trap '"$HERE/stop.sh" "$CLUSTER"; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

if ! "$HERE/start.sh" "$CLUSTER" 2>&1; then
    echo "SKIP: the Ceph cluster did not start (see above): $N_TESTS tests skipped"
    echo "0 passed, 0 failed, $N_TESTS skipped"
    exit 0
fi
QEMU_BUILD=$BUILD CEPH_CONF=$CLUSTER/ceph.conf python3 "$HERE/test_rbd.py" 2>&1
