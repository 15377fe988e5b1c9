#!/usr/bin/env bash
# Install fomm-lab and its Python dependencies: the one install that both the Docker image and CI
# (.ci/install.sh) perform, so the two cannot drift apart.
# usage: .ci/install-python-deps.sh [--torch-only|--deps-only] [--torch-version V] TORCH EXTRAS [--editable]
#   TORCH    where torch comes from: a pip index URL (https://download.pytorch.org/whl/cu128: the
#            image's CUDA build), torch==V from it with --torch-version, else as pyproject.toml
#            requires it; or a requirement (torch==2.13.0) from pip's usual sources (CI, and the
#            image's CPU route)
#   EXTRAS   the pyproject extras installed with the package: "lab" (image) or "test" (CI)
#   --torch-version V  the torch release that must end up installed, checked after each step
#            whatever its build (+cu128, +cpu): the package install cannot swap torch unnoticed
#   --editable    install the package in development mode (CI); the image installs it normally
#   --torch-only  stop after torch (the Dockerfile runs this first, to cache torch in its own layer)
#   --deps-only   torch and the package's dependencies with EXTRAS', not the package itself (the
#                 Dockerfile's second layer, which needs pyproject.toml alone)
# Every other dependency is read from pyproject.toml: this script names no package itself. The
# interpreter is $PYTHON (default: python3), typically a virtual environment's.
set -euo pipefail

usage="usage: $0 [--torch-only|--deps-only] [--torch-version V] TORCH EXTRAS [--editable]"
stop_after=
torch_version=
editable=()
positional=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --torch-only) stop_after=torch ;;
        --deps-only) stop_after=deps ;;
        --editable) editable=(--editable) ;;
        --torch-version)
            if [[ $# -lt 2 || ! $2 =~ ^[0-9]+(\.[0-9]+)*$ ]]; then
                echo "$0: --torch-version needs a release number such as 2.13.0" >&2
                echo "$usage" >&2
                exit 2
            fi
            torch_version=$2
            shift ;;
        -*) echo "$0: unknown option '$1'" >&2; echo "$usage" >&2; exit 2 ;;
        *) positional+=("$1") ;;
    esac
    shift
done
if [[ ${#positional[@]} -ne 2 ]]; then
    echo "$usage" >&2
    exit 2
fi
torch=${positional[0]}
extras=${positional[1]}

python=${PYTHON:-python3}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [[ $torch =~ ^https?:// && -n $torch_version ]]; then
    torch_args=(--index-url "$torch" "torch==$torch_version")
elif [[ $torch =~ ^https?:// ]]; then
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

# The installed torch must be release $torch_version (its local build tag, +cpu or +cu128, aside).
check_torch_version() {
    [[ -z $torch_version ]] && return 0
    "$python" - "$torch_version" <<'PY'
import sys
from importlib.metadata import version

installed = version("torch")
if installed.split("+")[0] != sys.argv[1]:
    sys.exit(f"install-python-deps.sh: torch {installed} is installed, not release {sys.argv[1]} "
             "(pyproject.toml's torch requirement and --torch-version disagree?)")
PY
}

# torch first (the CUDA or CPU build); the package install then finds the requirement satisfied
# and keeps that build.
"$python" -m pip install --no-cache-dir "${torch_args[@]}"
check_torch_version
if [[ $stop_after == torch ]]; then
    exit 0
fi
if [[ $stop_after == deps ]]; then
    # [project].dependencies and those of the extras, self-references (fomm-lab[lab]) expanded.
    deps_text=$("$python" - "$repo/pyproject.toml" "$extras" <<'PY'
import re
import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
optional = project.get("optional-dependencies", {})
me = re.sub(r"[-_.]+", "-", project["name"]).lower()
deps, todo, seen = list(project["dependencies"]), sys.argv[2].split(","), set()
while todo:
    extra = todo.pop()
    if extra in seen:
        continue
    seen.add(extra)
    if extra not in optional:
        sys.exit(f"pyproject.toml has no extra {extra!r}")
    for dep in optional[extra]:
        name, _, rest = re.match(r"([A-Za-z0-9._-]+)(\[([^\]]*)\])?", dep).group(1, 2, 3)
        if re.sub(r"[-_.]+", "-", name).lower() == me:
            todo += [e.strip() for e in (rest or "").split(",") if e.strip()]
        else:
            deps.append(dep)
print("\n".join(deps))
PY
)
    mapfile -t deps <<<"$deps_text"
    "$python" -m pip install --no-cache-dir "${deps[@]}"
    check_torch_version
    exit 0
fi
"$python" -m pip install --no-cache-dir "${editable[@]}" "${repo}[${extras}]"
check_torch_version
