# shellcheck shell=bash
# Sourced by build.sh and run.sh: what the fomm-lab Docker scripts share.

# Image name; FOMM_LAB_IMAGE overrides it.
fomm_image() {
    echo "${FOMM_LAB_IMAGE:-fomm-lab}"
}

# Stop with a clear message when the docker command is missing.
require_docker() {
    if ! command -v docker >/dev/null 2>&1; then
        echo "$0: docker is not installed or not on PATH (see https://docs.docker.com/engine/install/)," \
            "or run the lab without Docker: see README.md, 'Local install'." >&2
        exit 1
    fi
}

# "podman" when the docker command is podman (podman-docker, or a shim), else "docker".
docker_engine() {
    local version
    version=$(docker --version 2>/dev/null || true)
    if [[ ${version,,} == podman* ]]; then
        echo podman
    else
        echo docker
    fi
}

if ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 404)); then
    echo "$0: needs bash 4.4 or newer, this is $BASH_VERSION (macOS: brew install bash)" >&2
    exit 1
fi

# Work from the repository root, whatever the caller's current folder.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
