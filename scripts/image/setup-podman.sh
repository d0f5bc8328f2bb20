#!/usr/bin/env bash
# Idempotent: installs podman/buildah/runc/debootstrap when missing and writes a containers.conf that
# makes runc and the ulimits this sandbox needs the defaults (crun fails on hybrid cgroups; setrlimit is refused without explicit ulimits).
# Prints the `export CONTAINERS_CONF=...` line to use; sourcing this script exports it.
set -euo pipefail
missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || missing+=(runc)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-podman: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
conf_dir="${XDG_CONFIG_HOME:-$HOME/.config}/artifact-relay"
conf="$conf_dir/containers.conf"
mkdir -p "$conf_dir"
want='[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]

[engine]
runtime = "runc"'
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$want" ]; then
  printf '%s\n' "$want" >"$conf"
fi
export CONTAINERS_CONF="$conf"
echo "export CONTAINERS_CONF=$conf"
