"""ease: EASE: closed-form linear item-item model.

Writes candidates, similar items, models and test metrics; see :mod:`scripts.core.generators`.
"""

import sys

from scripts.core.generators import generator_component

NAME, DEPENDS_ON, run, main = generator_component("ease")

if __name__ == "__main__":
    sys.exit(main())
