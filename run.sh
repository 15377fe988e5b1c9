#!/usr/bin/env bash
# Start the fomm-lab JupyterLab in Docker with the NVIDIA GPU, on 127.0.0.1 only, with a fresh
# random token; prints the URL to open.
# usage: ./run.sh [--no-gpu] [extra `docker run` arguments]
# env:   FOMM_LAB_PORT   port on 127.0.0.1 (default 8888)
#        FOMM_LAB_HOME   checkpoint cache on this machine (default ~/.cache/fomm-lab)
#        FOMM_LAB_IMAGE  image name (default fomm-lab)
set -euo pipefail
# shellcheck source=.ci/docker-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/.ci/docker-common.sh"
require_docker

gpu_args=(--gpus all)
if [[ ${1:-} == --no-gpu ]]; then
    gpu_args=()
    shift
fi

port=${FOMM_LAB_PORT:-8888}
if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
    echo "$0: FOMM_LAB_PORT must be a port number (1-65535), not '$port'" >&2
    exit 2
fi
cache=${FOMM_LAB_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/fomm-lab}
# Create the mounted folders now, so that they belong to you and not to root.
mkdir -p "$cache" temp source_image_inputs

device_args=()
if [[ -e /dev/video0 ]]; then
    device_args=(--device /dev/video0 --group-add "$(stat -c %g /dev/video0)")
fi
tty_args=()
if [[ -t 0 && -t 1 ]]; then
    tty_args=(--interactive --tty)
fi

# 48 hex digits from the kernel's random source; handed over in the environment, not the command line.
JUPYTER_TOKEN=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
export JUPYTER_TOKEN

echo "fomm-lab: starting JupyterLab; when it is up, open"
echo "    http://127.0.0.1:$port/lab/tree/notebooks/demo.ipynb?token=$JUPYTER_TOKEN"
echo "(Ctrl-C stops it; checkpoints are cached in $cache)"

status=0
docker run --rm --init "${tty_args[@]}" "${gpu_args[@]}" "${device_args[@]}" \
    --publish "127.0.0.1:$port:$port" \
    --env JUPYTER_TOKEN --env "FOMM_LAB_PORT=$port" \
    --volume "$cache:/cache/fomm-lab" \
    --volume "$PWD/temp:/app/temp" \
    --volume "$PWD/source_image_inputs:/app/source_image_inputs" \
    "$@" "$(fomm_image)" || status=$?
# 125: docker itself failed to start the container, typically no NVIDIA runtime for --gpus.
if [[ $status -eq 125 && ${#gpu_args[@]} -gt 0 ]]; then
    echo "$0: docker could not start the container; without an NVIDIA GPU and the NVIDIA" \
        "Container Toolkit, use ./run_no_cuda.sh" >&2
fi
exit "$status"
