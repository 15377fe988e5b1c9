# fomm-lab: JupyterLab with the First Order Motion Model on an NVIDIA GPU.
#   ./build.sh && ./run.sh          (GPU, needs the NVIDIA Container Toolkit)
#   ./run_no_cuda.sh                (same image, CPU only)
#
# The CUDA runtime base gives the driver hooks of the NVIDIA Container Toolkit; the CUDA build of
# torch comes from the PyTorch wheel index and brings its own cuDNN.
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04

# PyTorch wheel index of the CUDA build that matches the base image.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
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

# Ubuntu's own security updates move these packages' versions; pinning them would break rebuilds.
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

# The same install as .ci/run (one script, dependencies read from pyproject.toml). torch alone first
# so that its large layer stays cached while the package changes.
COPY pyproject.toml ./
COPY .ci/install-python-deps.sh .ci/
RUN .ci/install-python-deps.sh --torch-only "$TORCH_INDEX" lab
COPY README.md ./
COPY fomm_lab/ fomm_lab/
RUN .ci/install-python-deps.sh "$TORCH_INDEX" lab \
    && rm -rf build fomm_lab.egg-info

COPY --chown=fomm:fomm notebooks/ notebooks/
COPY --chown=fomm:fomm source_image_inputs/ source_image_inputs/
RUN mkdir -p temp "$FOMM_LAB_HOME" \
    && chown fomm:fomm temp "$FOMM_LAB_HOME"

USER ${USER_UID}:${USER_GID}
VOLUME ["/cache/fomm-lab", "/app/temp"]
EXPOSE 8888

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"FOMM_LAB_PORT\"]}/api', timeout=4)"]

# Listens on FOMM_LAB_PORT (run.sh sets it to the host port it publishes, so the printed URL is
# right on both sides). run.sh passes the login token in JUPYTER_TOKEN; without one,
# `fomm-lab lab` makes a random token. Either way it prints the URL to open.
CMD ["fomm-lab", "lab", "--ip", "0.0.0.0", "--no-browser"]
