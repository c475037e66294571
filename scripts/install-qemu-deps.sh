#!/bin/bash
# Install what building the patched QEMU (scripts/qemu-build.sh) needs, on
# Debian 12 (bookworm), as root.  Idempotent; about a second when everything
# is already there.
#
#  - a deb-src entry for trixie (+ trixie-updates, trixie-security): SOURCE
#    entries only, for `apt-get source qemu`.  Never a trixie binary entry.
#  - bookworm-backports (binary) for meson >= 1.5 (QEMU 10.0 needs it).
#  - the build dependencies and the tools the build script uses (git, rsync,
#    dpkg-dev for apt-get source).
#  - firmware the built QEMU loads (the +ds source has no blobs): seabios
#    (BIOS + VGA BIOS: the iotests' PC machine does not start without it),
#    ipxe-qemu (NIC option ROMs: a PC machine with default devices does not
#    start without efi-e1000.rom), and gcc-multilib, without which configure's
#    i386 compiler probe fails and pc-bios/optionrom (kvmvapic.bin,
#    linuxboot_dma.bin, ...) is not built - every PC machine start then
#    prints "rom: file kvmvapic.bin: error", which breaks iotest reference
#    outputs (185).
#  - libfuse3-dev (FUSE exports of qemu-storage-daemon: `vma mount`) and
#    librbd-dev (the rbd driver: disks on Ceph).
#  - strace (iotest backup-vma-robustness sees the archive fdatasync()ed).
#  qemu-utils / qemu-system-* are deliberately not installed: we build our own.
set -euo pipefail

MESON_MIN=1.5
PACKAGES=(ninja-build flex bison python3 python3-venv gcc gcc-multilib make
          pkgconf libglib2.0-dev libpixman-1-dev libaio-dev zlib1g-dev
          uuid-dev libfdt-dev libzstd-dev ccache dpkg-dev xz-utils git rsync
          seabios ipxe-qemu libfuse3-dev fuse3 librbd-dev strace)
SRC_LIST=/etc/apt/sources.list.d/vma-qemu-trixie-src.sources
BPO_LIST=/etc/apt/sources.list.d/vma-bookworm-backports.sources
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

say() { echo "install-qemu-deps: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    say "must run as root"
    exit 1
fi

# Is there an active apt source line/stanza of type $1 for suite $2?
# Handles one-line (sources.list) and deb822 (.sources) formats.
have_source() {
    local type=$1 suite=$2 f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        grep -qE "^[[:space:]]*$type([[:space:]]+\[[^]]*\])?[[:space:]]+[^[:space:]]+[[:space:]]+$suite([[:space:]]|$)" "$f" \
            && return 0
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v type="$type" -v suite="$suite" '
            function check() { if (t && s && e) found = 1; t = s = 0; e = 1 }
            BEGIN { e = 1 }
            /^[[:space:]]*$/ { check(); next }
            /^#/ { next }
            tolower($1) == "types:"   { for (i = 2; i <= NF; i++) if ($i == type) t = 1 }
            tolower($1) == "suites:"  { for (i = 2; i <= NF; i++) if ($i == suite) s = 1 }
            tolower($1) == "enabled:" { e = (tolower($2) != "no") }
            END { check(); exit !found }' "$f" && return 0
    done
    return 1
}

meson_ok() {
    local v
    v=$(dpkg-query -W -f='${Version}' meson 2>/dev/null) || return 1
    dpkg --compare-versions "$v" ge "$MESON_MIN"
}

missing_packages() {
    local p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q ' ok installed$' \
            || echo "$p"
    done
}

# Source index for trixie present (i.e. apt-get update ran since adding it)?
have_trixie_sources_index() {
    compgen -G '/var/lib/apt/lists/*_dists_trixie_main_source_Sources*' >/dev/null
}

# --- fast path -------------------------------------------------------------
missing=$(missing_packages)
if [ -z "$missing" ] && meson_ok && have_source deb-src trixie &&
   have_trixie_sources_index; then
    exit 0
fi

# --- apt sources -----------------------------------------------------------
need_update=0
if ! have_source deb-src trixie; then
    say "adding trixie deb-src entries (source only) in $SRC_LIST"
    cat >"$SRC_LIST" <<EOF
# Added by scripts/install-qemu-deps.sh: SOURCE packages only (apt-get source
# qemu).  Never add trixie binary (Types: deb) entries on bookworm.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie trixie-updates
Components: main
Signed-By: $KEYRING

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: trixie-security
Components: main
Signed-By: $KEYRING
EOF
    need_update=1
fi
if ! meson_ok && ! have_source deb bookworm-backports; then
    say "adding bookworm-backports (binary) in $BPO_LIST"
    cat >"$BPO_LIST" <<EOF
# Added by scripts/install-qemu-deps.sh: meson >= $MESON_MIN for QEMU 10.0.
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: $KEYRING
EOF
    need_update=1
fi
if [ $need_update = 1 ] || ! have_trixie_sources_index || [ -n "$missing" ] ||
   ! meson_ok; then
    say "apt-get update"
    apt-get update -q >&2
fi

# --- packages --------------------------------------------------------------
export DEBIAN_FRONTEND=noninteractive
install=()
[ -n "$missing" ] && mapfile -t install <<<"$missing"
# Only meson comes from backports (backports are not preferred by default).
meson_ok || install+=(meson/bookworm-backports)
if [ ${#install[@]} -gt 0 ]; then
    say "installing ${install[*]}"
    apt-get install -y -q --no-install-recommends "${install[@]}" >&2
fi

if ! meson_ok; then
    say "meson >= $MESON_MIN still missing (have: $(dpkg-query -W -f='${Version}' meson 2>/dev/null || echo none))"
    exit 1
fi
if ! have_trixie_sources_index; then
    say "no trixie Sources index after apt-get update: is deb.debian.org reachable?"
    exit 1
fi
say "done"
