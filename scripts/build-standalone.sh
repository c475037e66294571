#!/bin/bash
# Build the standalone library, tool and tests (build/), the same with
# ASan+UBSan (build-asan/), the libFuzzer target (build-fuzz/) and the tool
# without zstd and zlib (build-nozstd/: compressed archives refused).
# Usage: build-standalone.sh [plain|asan|fuzz|nozstd]...   (default: plain)
set -euo pipefail
cd "$(dirname "$0")/.."

setup() {
    local dir=$1; shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >/dev/null
    fi
    ninja -C "$dir" >/dev/null
}

for kind in "${@:-plain}"; do
    case $kind in
    plain) setup build ;;
    asan)  setup build-asan -Db_sanitize=address,undefined -Db_lundef=false \
               -Dbuildtype=debug ;;
    nozstd) setup build-nozstd -Dzstd=disabled -Dzlib=disabled ;;
    fuzz)  CC=clang setup build-fuzz -Dfuzzer=true \
               -Db_sanitize=address,undefined -Db_lundef=false ;;
    *) echo "build-standalone: unknown build '$kind'" >&2; exit 2 ;;
    esac
done
