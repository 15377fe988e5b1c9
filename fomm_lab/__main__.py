"""``python -m fomm_lab``: the ``fomm-lab`` command line."""

import sys

from fomm_lab.cli import main

if __name__ == "__main__":
    sys.exit(main())
