"""``python -m alta`` (and ``torchrun ... -m alta run``): the same as the ``alta`` console script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
