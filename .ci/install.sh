#!/usr/bin/env bash
# Install everything fomm-lab's tests need on a bare Debian machine: system packages (ffmpeg,
# Chromium for the browser tests, shellcheck; podman, runc and mmdebstrap for the image check,
# tests/test_docker_image.py), a virtual environment in .venv, the CPU build of torch and the
# package with its test extras. Safe to run again.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

sudo=()
if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
packages=(ffmpeg chromium shellcheck fonts-dejavu-core)
# The image check: podman with runc (crun fails in CI sandboxes), its init, bridge networking and,
# for a normal user, rootless podman's helpers; mmdebstrap makes the Debian base image.
packages+=(podman runc catatonit netavark aardvark-dns iptables uidmap slirp4netns mmdebstrap)
missing=()
for pkg in "${packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python3 -m venv .venv
PYTHON=.venv/bin/python .ci/install-python-deps.sh torch==2.13.0 test --editable
