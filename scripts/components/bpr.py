"""bpr: BPR from implicit: pairwise-ranking matrix-factorisation candidates and similar items.

Writes candidates, similar items, models and test metrics; see :mod:`scripts.core.generators`.
"""

import sys

from scripts.core.generators import generator_component

NAME, DEPENDS_ON, run, main = generator_component("bpr")

if __name__ == "__main__":
    sys.exit(main())
