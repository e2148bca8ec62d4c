#!/usr/bin/env bash
# Builds the example C guests (examples/guests/*.c) to wasm32 modules that
# import only from "tensorwasm" and "wasi_snapshot_preview1".
#
# usage: scripts/build-guests.sh [--install] [--out-dir DIR] [NAME...]
#
#   --install       first apt-get install the toolchain (Debian/Ubuntu):
#                   clang lld wasi-libc libclang-rt-dev-wasm32
#   --out-dir DIR   write DIR/<name>.wasm (default: examples/guests, next to
#                   the sources, where the committed modules live)
#   NAME...         build only these guests (default: every examples/guests/*.c)
#
# Environment: CC (default clang) picks the compiler; WASI_SYSROOT points at a
# wasi-sdk style sysroot (default: /usr/share/wasi-sysroot when it exists,
# else Debian's multiarch wasi-libc in /usr/include/wasm32-wasi and
# /usr/lib/wasm32-wasi, which Debian's clang finds by itself).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC_DIR="$ROOT/examples/guests"
INCLUDE_DIR="$ROOT/examples/include"
OUT_DIR="$SRC_DIR"
INSTALL=0
NAMES=()

while [[ $# -gt 0 ]]; do
    case "$1" in
        --install) INSTALL=1; shift ;;
        --out-dir|-o)
            [[ $# -ge 2 ]] || { echo "build-guests: $1 needs a directory" >&2; exit 2; }
            OUT_DIR="$2"; shift 2 ;;
        --out-dir=*) OUT_DIR="${1#--out-dir=}"; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        -*) echo "build-guests: unknown option $1" >&2; exit 2 ;;
        *) NAMES+=("${1%.c}"); shift ;;
    esac
done

if [[ $INSTALL -eq 1 ]]; then
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then SUDO=(sudo); fi
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update
    # libclang-rt-dev-wasm32 holds libclang_rt.builtins-wasm32.a, which
    # clang's wasm32-wasi driver always links.
    "${SUDO[@]}" apt-get install -y --no-install-recommends \
        clang lld wasi-libc libclang-rt-dev-wasm32
fi

CC="${CC:-clang}"
if ! command -v "$CC" >/dev/null 2>&1; then
    echo "build-guests: $CC not found; run with --install (Debian) or set CC" >&2
    exit 1
fi

SYSROOT_FLAGS=()
if [[ -n "${WASI_SYSROOT:-}" ]]; then
    SYSROOT_FLAGS=(--sysroot="$WASI_SYSROOT")
elif [[ -f /usr/share/wasi-sysroot/lib/wasm32-wasi/libc.a ]]; then
    SYSROOT_FLAGS=(--sysroot=/usr/share/wasi-sysroot)
elif [[ ! -f /usr/lib/wasm32-wasi/libc.a ]]; then
    echo "build-guests: no wasi-libc found (set WASI_SYSROOT, or run with --install)" >&2
    exit 1
fi

BUILTINS="$("$CC" --target=wasm32-wasi "${SYSROOT_FLAGS[@]}" -print-libgcc-file-name)"
if [[ ! -f "$BUILTINS" ]]; then
    echo "build-guests: $BUILTINS is missing (Debian: libclang-rt-dev-wasm32;" \
        "run with --install)" >&2
    exit 1
fi

if [[ ${#NAMES[@]} -eq 0 ]]; then
    for src in "$SRC_DIR"/*.c; do
        NAMES+=("$(basename "$src" .c)")
    done
fi

# -nostartfiles -Wl,--no-entry: a library of exports (each guest marks its
# entry points with __attribute__((export_name(...)))), no _start and no
# _initialize. --strip-debug drops the DWARF that wasi-libc's objects carry;
# the name section stays, so traps show function names.
CFLAGS=(
    --target=wasm32-wasi "${SYSROOT_FLAGS[@]}"
    -O2 -std=c11 -Wall -Wextra
    -I"$INCLUDE_DIR"
    -nostartfiles -Wl,--no-entry -Wl,--strip-debug
)

mkdir -p "$OUT_DIR"
for name in "${NAMES[@]}"; do
    src="$SRC_DIR/$name.c"
    [[ -f "$src" ]] || { echo "build-guests: no $src" >&2; exit 1; }
    out="$OUT_DIR/$name.wasm"
    "$CC" "${CFLAGS[@]}" "$src" -o "$out"
    chmod 0644 "$out"
    echo "built $out ($(wc -c <"$out") bytes)"
done
