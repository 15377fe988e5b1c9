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
image=$(fomm_image)

# The lab runs as the image's user (build.sh gives it your ids; a root caller's image gets 1000).
if ! image_user=$(docker image inspect --format '{{.Config.User}}' "$image" 2>/dev/null); then
    echo "$0: there is no image '$image' yet: build it first with ./build.sh" >&2
    exit 1
fi
if ! [[ $image_user =~ ^([0-9]+):([0-9]+)$ ]]; then
    echo "$0: image '$image' runs as user '$image_user', not as numeric uid:gid: rebuild it with ./build.sh" >&2
    exit 1
fi
lab_uid=${BASH_REMATCH[1]}
lab_gid=${BASH_REMATCH[2]}
caller_uid=$(id -u)

# Adds to user_args the podman options ($1: --uidmap or --gidmap) that make container id $2 the
# host's id $3, and every other container id one in a block far above the ids of people and
# services (2^31 + id), so that nothing else in the container owns a file of yours.
map_to_host() {
    local option=$1 id=$2 host=$3 base=2147483648 top
    top=$((id + 1 > 65536 ? id + 1 : 65536))
    if ((id > 0)); then user_args+=("$option" "0:$base:$id"); fi
    user_args+=("$option" "$id:$host:1")
    if ((top > id + 1)); then user_args+=("$option" "$((id + 1)):$((base + id + 1)):$((top - id - 1))"); fi
}

# The files the lab writes into the mounted folders must be the caller's, while the lab itself
# stays an unprivileged user in the container (never root: a notebook runs any code):
# - Docker (rootful, the usual install) has no per-container user mapping, so the lab's uid is a
#   host uid: build.sh makes it yours, and a mismatch or a root caller stops here with what to do
#   (the lab cannot write as root without being root). Rootless Docker and userns-remap map
#   every container uid to a subordinate uid, so the files could never be yours there.
# - podman maps ids per container: rootless, keep-id makes you the lab's user; rootful (a root
#   caller, as on CI machines and servers), the lab's uid and gid become root's and every other
#   container id an unused high one. The lab then has no capabilities, yet its files on the host
#   are root's: in the mounted folders, and the device nodes the runtime binds in (/dev/null, ...).
user_args=()
if [[ $(docker_engine) == podman ]]; then
    if ((caller_uid == 0)); then
        map_to_host --uidmap "$lab_uid" 0
        map_to_host --gidmap "$lab_gid" 0
    else
        user_args=(--userns "keep-id:uid=$lab_uid,gid=$lab_gid")
    fi
elif ((caller_uid == 0)); then
    echo "$0: started as root: with Docker the lab (uid $lab_uid) cannot write files as root without" \
        "running as root; start it as the user who should own temp/ (one in the docker group), or use podman" >&2
    exit 1
elif [[ $(docker info --format '{{json .SecurityOptions}}' 2>/dev/null || true) =~ name=(rootless|userns) ]]; then
    echo "$0: this Docker maps container users to other host ids (rootless or userns-remap), so the" \
        "lab's files could not be yours: use rootful Docker, or podman" >&2
    exit 1
elif ((lab_uid != caller_uid)); then
    echo "$0: image '$image' runs the lab as uid $lab_uid, you are uid $caller_uid: rebuild it as" \
        "yourself with ./build.sh (or set FOMM_LAB_IMAGE to your own image)" >&2
    exit 1
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

# docker runs in the background so that a SIGTERM or SIGINT sent to this script alone (kill, a
# supervisor) reaches it too, as SIGTERM (a background job ignores SIGINT): docker passes it on to
# the lab, which stops. `wait` returns early on a trapped signal, so it is repeated until docker
# itself has exited. Ctrl-C in a terminal reaches docker directly as well.
docker run --rm --init "${tty_args[@]}" "${gpu_args[@]}" "${device_args[@]}" "${user_args[@]}" \
    --publish "127.0.0.1:$port:$port" \
    --env JUPYTER_TOKEN --env "FOMM_LAB_PORT=$port" \
    --volume "$cache:/cache/fomm-lab" \
    --volume "$PWD/temp:/app/temp" \
    --volume "$PWD/source_image_inputs:/app/source_image_inputs" \
    "$@" "$image" <&0 &
docker_pid=$!
trap 'kill -TERM "$docker_pid" 2>/dev/null || true' INT TERM HUP
while true; do
    status=0
    wait "$docker_pid" || status=$?
    kill -0 "$docker_pid" 2>/dev/null || break
done
trap - INT TERM HUP

# 125: docker itself failed to start the container, typically no NVIDIA runtime for --gpus.
if [[ $status -eq 125 && ${#gpu_args[@]} -gt 0 ]]; then
    echo "$0: docker could not start the container; without an NVIDIA GPU and the NVIDIA" \
        "Container Toolkit, use ./run_no_cuda.sh" >&2
fi
exit "$status"
