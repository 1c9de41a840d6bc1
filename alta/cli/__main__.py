"""``python -m alta.cli``: the same as the ``alta`` console script."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
