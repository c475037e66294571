#!/bin/bash
# Install what the standalone build, its tests, fuzzer and benchmarks need
# (Debian 12, as root).  Quick when everything is already there.
set -euo pipefail

PACKAGES=(meson ninja-build pkgconf gcc clang libclang-rt-14-dev
          libglib2.0-dev uuid-dev zlib1g-dev libzstd-dev
          python3 zstd gzip coreutils time bc strace)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
