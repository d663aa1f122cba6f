"""friends: Friends' listening: what a user's friends play, weighted by their plays.

Writes candidates, similar items, models and test metrics; see :mod:`scripts.core.generators`.
"""

import sys

from scripts.core.generators import generator_component

NAME, DEPENDS_ON, run, main = generator_component("friends")

if __name__ == "__main__":
    sys.exit(main())
