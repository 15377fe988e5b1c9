#!/usr/bin/env bash
# Start the fomm-lab JupyterLab in Docker without a GPU (CPU only); same options as run.sh.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/run.sh" --no-gpu "$@"
