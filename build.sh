#!/usr/bin/env bash
# Build the fomm-lab Docker image (JupyterLab + the CUDA build of torch).
# usage: ./build.sh [extra `docker build` arguments]
# env:   FOMM_LAB_IMAGE  image name (default fomm-lab)
#        TORCH_INDEX     PyTorch wheel index (default: the Dockerfile's CUDA build)
set -euo pipefail
# shellcheck source=.ci/docker-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/.ci/docker-common.sh"
require_docker

# The image's user gets your ids, so the files it writes to the mounted folders are yours.
# A root caller still gets an unprivileged user in the image.
uid=$(id -u)
gid=$(id -g)
if [[ $uid -eq 0 ]]; then
    uid=1000
    gid=1000
fi

# podman builds OCI images by default, which have no HEALTHCHECK; Docker-format ones keep it.
if [[ $(docker_engine) == podman ]]; then
    export BUILDAH_FORMAT=${BUILDAH_FORMAT:-docker}
fi

build_args=(--build-arg "USER_UID=$uid" --build-arg "USER_GID=$gid")
if [[ -n ${TORCH_INDEX:-} ]]; then
    build_args+=(--build-arg "TORCH_INDEX=$TORCH_INDEX")
fi

docker build "${build_args[@]}" --tag "$(fomm_image)" "$@" .
echo "Built $(fomm_image). Start the lab with ./run.sh (NVIDIA GPU) or ./run_no_cuda.sh (CPU)."
