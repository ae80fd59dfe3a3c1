#!/usr/bin/env bash
# Install and configure podman for this machine (root, Debian bookworm): podman, buildah, runc,
# debootstrap; containers.conf with runc (crun fails on hybrid cgroups here) and ulimits that
# rootful containers accept. Idempotent: re-running changes nothing once done.
set -euo pipefail

if ! command -v podman >/dev/null || ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null \
    || ! command -v runc >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah debootstrap runc >/dev/null
fi

conf=/etc/containers/containers.conf
if ! grep -qs 'mlpipeline container-deps' "$conf"; then
    mkdir -p "$(dirname "$conf")"
    cat >>"$conf" <<'CONF'
# mlpipeline container-deps: runc (crun fails on this host's hybrid cgroups) and explicit ulimits.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
CONF
fi
podman --version
