#!/usr/bin/env bash
# Installs one tensor-wasm release side by side with the others:
#
#   sudo deploy/systemd/install.sh VERSION WHEEL [--activate]
#   sudo deploy/systemd/install.sh 0.2.0 dist/tensorwasm_tc-0.2.0-cp311-abi3-manylinux_2_34_x86_64.whl
#
# VERSION's virtual environment goes to /usr/local/lib/tensor-wasm/vVERSION/
# (with the wheel and its dependencies; nothing outside it changes when a
# release is added). The first run also creates the tensorwasm user, the
# configs under /etc (never overwritten), the units and the /usr/local/bin
# links. --activate then points /usr/local/lib/tensor-wasm/current at the new
# release; restarting the services is left to you (deploy/systemd/README.md).
set -euo pipefail

PREFIX=/usr/local/lib/tensor-wasm
UNIT_DIR=/etc/systemd/system
HERE=$(cd "$(dirname "$0")" && pwd)

die() { echo "install.sh: $*" >&2; exit 1; }

[ $# -ge 2 ] || die "usage: install.sh VERSION WHEEL [--activate]"
VERSION=${1#v}
WHEEL=$2
ACTIVATE=${3:-}
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+.][0-9A-Za-z.]+)?$ ]] || die "VERSION must look like 1.2.3, not '$1'"
[ -f "$WHEEL" ] || die "no wheel at $WHEEL"
[ "$(id -u)" -eq 0 ] || die "run as root (sudo)"

DEST=$PREFIX/v$VERSION
[ -e "$DEST" ] && die "$DEST exists: release $VERSION is installed already"

# 1. The release: a virtual environment of its own, tested before use. Made
# in place (a venv's scripts name its interpreter by absolute path, so it
# cannot be moved) and removed again if anything fails.
install -d -m 0755 "$PREFIX"
trap 'rm -rf "$DEST"' ERR
python3 -m venv "$DEST"
"$DEST/bin/pip" install --quiet --no-cache-dir "$WHEEL"
echo "installed: $("$DEST/bin/tensor-wasm" --version | head -n 1)"
"$DEST/bin/tensorcast-cli" --version >/dev/null
trap - ERR

# 2. Once per host: user, configs, units, command links.
if ! id tensorwasm >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/tensor-wasm --no-create-home \
        --shell /usr/sbin/nologin tensorwasm
fi
install -d -m 0755 /etc/tensor-wasm /etc/tensorcast
if [ ! -e /etc/tensor-wasm/tensor-wasm.env ]; then
    install -m 0640 -o root -g tensorwasm "$HERE/tensor-wasm.env.example" /etc/tensor-wasm/tensor-wasm.env
fi
for cfg in store_daemon_config.yaml global_store_config.yaml; do
    [ -e "/etc/tensorcast/$cfg" ] || install -m 0644 "$HERE/$cfg" "/etc/tensorcast/$cfg"
done
for unit in tensor-wasm.service tensorcast-daemon.service tensorcast-global-store.service; do
    install -m 0644 "$HERE/$unit" "$UNIT_DIR/$unit"
done
for cmd in tensor-wasm tensor-wasm-cli tensorcast-cli; do
    ln -sfn "$PREFIX/current/bin/$cmd" "/usr/local/bin/$cmd"
done
systemctl daemon-reload

# 3. The switch (the first install always makes "current").
if [ "$ACTIVATE" = "--activate" ] || [ ! -e "$PREFIX/current" ]; then
    ln -sfn "v$VERSION" "$PREFIX/current"
    echo "current -> v$VERSION; restart: systemctl restart tensorcast-daemon tensor-wasm"
else
    echo "current -> $(readlink "$PREFIX/current") (unchanged; switch with: ln -sfn v$VERSION $PREFIX/current)"
fi
