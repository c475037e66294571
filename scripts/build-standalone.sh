#!/bin/bash
# Build the standalone library, tool and tests (build/), the same with
# ASan+UBSan (build-asan/) and the libFuzzer target (build-fuzz/).
# Usage: build-standalone.sh [plain|asan|fuzz]...   (default: plain)
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
    fuzz)  CC=clang setup build-fuzz -Dfuzzer=true \
               -Db_sanitize=address,undefined -Db_lundef=false ;;
    *) echo "build-standalone: unknown build '$kind'" >&2; exit 2 ;;
    esac
done
