#!/bin/bash
# Install what the Ceph test cluster (tests/ceph/start.sh) and the RBD
# benchmark need, on Debian 12 (bookworm, Ceph 16.2), as root.  Idempotent:
# about a second when everything is already there.
#
#  - ceph-mon, ceph-mgr, ceph-osd: the daemons of the one-node cluster
#  - ceph-common: the `ceph` and `rbd` command-line tools
#  - librbd-dev comes with scripts/install-qemu-deps.sh (QEMU's rbd driver)
set -euo pipefail

PACKAGES=(ceph-mon ceph-mgr ceph-osd ceph-common)

say() { echo "install-ceph-deps: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    say "must run as root"
    exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q ' ok installed$' ||
        missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

export DEBIAN_FRONTEND=noninteractive
say "apt-get update"
apt-get update -q >&2
say "installing ${missing[*]}"
# --no-install-recommends: no ceph-mds, radosgw, ... ; the packages' own
# systemd units are never started (the tests run the daemons themselves)
apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
say "done"
