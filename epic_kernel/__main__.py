"""`python -m epic_kernel ...` is the `epic` command (see epic_kernel.cli)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
