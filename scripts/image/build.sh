#!/usr/bin/env bash
# Builds the artifact-relay image locally with podman, from a locally made base (no registry pulls):
#   scripts/image/build.sh [TAG]        (default localhost/artifact-relay:dev)
# Prints the image size on the last line as `image-size-bytes <n>`.
set -euo pipefail
cd "$(dirname "$0")/../.."
TAG="${1:-${IMAGE_TAG:-localhost/artifact-relay:dev}}"
BASE_IMAGE="${BASE_IMAGE:-localhost/artifact-relay-base:bookworm-node24}"
VERSION="${VERSION:-$(node -p 'require("./package.json").version')}"
# shellcheck source=/dev/null
. scripts/image/setup-podman.sh >/dev/null
BASE_IMAGE="$BASE_IMAGE" scripts/image/make-base.sh
# Behind a TLS-intercepting proxy the host trusts an extra CA (NODE_EXTRA_CA_CERTS): lend it to `npm ci`.
ca_args=()
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f "$NODE_EXTRA_CA_CERTS" ]; then
  ca_args=(-v "$NODE_EXTRA_CA_CERTS:/run/host-ca.crt:ro" --build-arg NODE_EXTRA_CA_CERTS=/run/host-ca.crt)
fi
start=$(date +%s)
podman build --runtime runc --network=host "${ca_args[@]}" \
  --ulimit nofile=1024:1024 --ulimit nproc=1000:1000 \
  --build-arg NODE_IMAGE="$BASE_IMAGE" --build-arg VERSION="$VERSION" \
  -t "$TAG" . >&2
echo "built $TAG in $(( $(date +%s) - start )) s" >&2
size=$(podman image inspect --format '{{.Size}}' "$TAG")
echo "image $TAG: $(( size / 1024 / 1024 )) MiB (base $(( $(podman image inspect --format '{{.Size}}' "$BASE_IMAGE") / 1024 / 1024 )) MiB)" >&2
echo "image-size-bytes $size"
