"""``python -m encore.pipeline``: run Encore's components (see :mod:`encore.pipeline.cli`)."""

import sys

from encore.pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main())
