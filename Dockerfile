# fomm-lab: JupyterLab with the First Order Motion Model on an NVIDIA GPU.
#   ./build.sh && ./run.sh          (GPU, needs the NVIDIA Container Toolkit)
#   ./run_no_cuda.sh                (same image, CPU only)
#
# The base is nvidia/cuda's smallest flavour, "base": Ubuntu plus the CUDA runtime library and the
# settings the NVIDIA Container Toolkit acts on (NVIDIA_VISIBLE_DEVICES, NVIDIA_DRIVER_CAPABILITIES
# =compute,utility so that it mounts the driver's libcuda, NVIDIA_REQUIRE_CUDA so that it refuses a
# driver too old for CUDA 12.8). The "runtime" and "cudnn" flavours add gigabytes of CUDA libraries
# that the cu128 torch wheels bring anyway (nvidia-cublas-cu12, nvidia-cudnn-cu12, ... from the same
# index), so they would only make the image larger. CI builds the same Dockerfile on a Debian bookworm base with the CPU torch
# (BASE_IMAGE=... TORCH_INDEX=torch==2.13.0); see README.md, "What CI verifies".
ARG BASE_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04
# hadolint ignore=DL3006
FROM ${BASE_IMAGE}

# Where torch comes from: the PyTorch wheel index of the CUDA build that matches the base image,
# or a requirement from pip's usual sources (torch==2.13.0: the CPU build, as CI installs it).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
# The torch release CI tests (.ci/install.sh); the image gets that release, in its CUDA build.
ARG TORCH_VERSION=2.13.0
# build.sh passes the host user's ids so files written to the mounted folders belong to that user.
ARG USER_UID=1000
ARG USER_GID=1000

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    FOMM_LAB_HOME=/cache/fomm-lab \
    TORCH_HOME=/cache/fomm-lab/torch \
    FOMM_LAB_PORT=8888

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# The distribution's security updates move these packages' versions; pinning them would break
# rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates ffmpeg libgl1 libglib2.0-0 python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv "$VIRTUAL_ENV"

# Ubuntu 24.04 images ship a user "ubuntu" holding uid 1000; replace it with the lab's user.
RUN if id ubuntu >/dev/null 2>&1; then userdel --remove ubuntu; fi \
    && groupadd --non-unique --gid "$USER_GID" fomm \
    && useradd --non-unique --create-home --uid "$USER_UID" --gid "$USER_GID" --shell /bin/bash fomm

WORKDIR /app

# pip's configuration for this build only, e.g. a package mirror and the CA of a TLS-intercepting
# proxy: a file mounted into the build (podman build --volume DIR:/mnt:ro --build-arg
# PIP_CONFIG_FILE=/mnt/pip.conf, as CI does), read by pip from the environment; nothing of it is
# copied into the image. Unset, pip uses PyPI and the index above.
ARG PIP_CONFIG_FILE

# The same install as .ci/install.sh (one script, dependencies read from pyproject.toml), in three
# layers that change ever more often, so that a rebuild redoes only what changed: torch (before any
# of the package's files is copied), the dependencies (pyproject.toml alone), the package.
COPY .ci/install-python-deps.sh .ci/
RUN .ci/install-python-deps.sh --torch-only --torch-version "$TORCH_VERSION" "$TORCH_INDEX" lab
COPY pyproject.toml ./
RUN .ci/install-python-deps.sh --deps-only --torch-version "$TORCH_VERSION" "$TORCH_INDEX" lab
COPY README.md ./
COPY fomm_lab/ fomm_lab/
RUN .ci/install-python-deps.sh --torch-version "$TORCH_VERSION" "$TORCH_INDEX" lab \
    && rm -rf build fomm_lab.egg-info

COPY --chown=fomm:fomm notebooks/ notebooks/
COPY --chown=fomm:fomm source_image_inputs/ source_image_inputs/
RUN mkdir -p temp "$FOMM_LAB_HOME" \
    && chown fomm:fomm temp "$FOMM_LAB_HOME"

USER ${USER_UID}:${USER_GID}
VOLUME ["/cache/fomm-lab", "/app/temp"]
EXPOSE 8888

# Docker runs it on its own; podman keeps it only in Docker-format images (BUILDAH_FORMAT=docker).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"FOMM_LAB_PORT\"]}/api', timeout=4)"]

# Listens on FOMM_LAB_PORT (run.sh sets it to the host port it publishes, so the printed URL is
# right on both sides). run.sh passes the login token in JUPYTER_TOKEN; without one,
# `fomm-lab lab` makes a random token. Either way it prints the URL to open.
CMD ["fomm-lab", "lab", "--ip", "0.0.0.0", "--no-browser"]
