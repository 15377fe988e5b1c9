#!/usr/bin/env bash
# Install fomm-lab and its Python dependencies: the one install that both the Docker image and CI
# (.ci/install.sh) perform, so the two cannot drift apart.
#
# usage: .ci/install-python-deps.sh [--torch-only] TORCH EXTRAS [--editable]
#   TORCH         where torch comes from, either
#                 - a pip index URL (https://download.pytorch.org/whl/cu128): torch as pyproject.toml
#                   requires it, from that index (the Docker image: the CUDA build), or
#                 - a requirement (torch==2.13.0): that torch from pip's usual sources (CI)
#   EXTRAS        the pyproject extras installed with the package: "lab" (Docker image) or "test"
#                 (CI; it includes "lab")
#   --editable    install the package in development mode (CI); the image installs it normally
#   --torch-only  stop after torch (the Dockerfile runs this first, to cache torch in its own layer)
#
# Every other dependency is read from pyproject.toml: this script names no package itself. The
# interpreter is $PYTHON (default: python3), typically a virtual environment's.
set -euo pipefail

usage="usage: $0 [--torch-only] TORCH EXTRAS [--editable]"
torch_only=false
editable=()
positional=()
for arg in "$@"; do
    case $arg in
        --torch-only) torch_only=true ;;
        --editable) editable=(--editable) ;;
        -*) echo "$0: unknown option '$arg'" >&2; echo "$usage" >&2; exit 2 ;;
        *) positional+=("$arg") ;;
    esac
done
if [[ ${#positional[@]} -ne 2 ]]; then
    echo "$usage" >&2
    exit 2
fi
torch=${positional[0]}
extras=${positional[1]}

python=${PYTHON:-python3}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [[ $torch =~ ^https?:// ]]; then
    # torch exactly as pyproject.toml requires it (e.g. "torch>=2.1"), from the given index.
    torch_spec=$("$python" - "$repo/pyproject.toml" <<'PY'
import re
import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    deps = tomllib.load(f)["project"]["dependencies"]
torch = [d for d in deps if re.split(r"[\s<>=!~;\[]", d, maxsplit=1)[0] == "torch"]
if len(torch) != 1:
    sys.exit("pyproject.toml must list torch exactly once in [project].dependencies")
print(torch[0])
PY
)
    torch_args=(--index-url "$torch" "$torch_spec")
else
    torch_args=("$torch")
fi

# torch first (the CUDA or CPU build); the package install then finds the requirement satisfied
# and keeps that build.
"$python" -m pip install --no-cache-dir "${torch_args[@]}"
if [[ $torch_only == true ]]; then
    exit 0
fi
"$python" -m pip install --no-cache-dir "${editable[@]}" "${repo}[${extras}]"
