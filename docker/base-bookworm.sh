#!/usr/bin/env bash
# Build the offline base image localhost/bookworm-base (Debian bookworm minbase + python3.11) from the
# Debian mirror this machine's apt uses, without any image registry:
#   debootstrap --variant=minbase bookworm -> strip apt lists/caches -> podman import.
# Use it with: podman build --build-arg BASE_IMAGE=localhost/bookworm-base ...  (make base-image)
#
# Env: BASE_TAG (default localhost/bookworm-base), MIRROR (default: the first URIs:/deb line of the
# host's apt sources), SUITE (default bookworm). Needs root and debootstrap (make container-deps).
set -euo pipefail

BASE_TAG=${BASE_TAG:-localhost/bookworm-base}
SUITE=${SUITE:-bookworm}
# python3 (3.11.2 in bookworm) + venv for the builder stage; ca-certificates for TLS at run time.
PACKAGES=${PACKAGES:-python3,python3-venv,ca-certificates}

host_mirror() {
    # deb822 (*.sources: "URIs: http://...") first, then one-line "deb http://... bookworm main".
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$f")
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' "$f")
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    echo "http://deb.debian.org/debian"
}
MIRROR=${MIRROR:-$(host_mirror)}

command -v debootstrap >/dev/null || { echo "debootstrap missing: run 'make container-deps'" >&2; exit 1; }
command -v podman >/dev/null || { echo "podman missing: run 'make container-deps'" >&2; exit 1; }

rootfs=$(mktemp -d /var/tmp/bookworm-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

echo "debootstrap $SUITE from $MIRROR (+ $PACKAGES) into $rootfs"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" >/dev/null

# The image gets the same mirror for later apt use, then loses everything it does not need at run time.
echo "deb $MIRROR $SUITE main" >"$rootfs/etc/apt/sources.list"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/var/log/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
"$rootfs/usr/bin/python3" --version

tar --numeric-owner -C "$rootfs" -c . | podman import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase $SUITE ($MIRROR) + $PACKAGES" \
    - "$BASE_TAG" >/dev/null
podman image ls "$BASE_TAG"
