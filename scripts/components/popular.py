"""popular: Most-listened items (optionally recency-weighted): the fallback that completes every list.

Writes candidates, similar items, models and test metrics; see :mod:`scripts.core.generators`.
"""

import sys

from scripts.core.generators import generator_component

NAME, DEPENDS_ON, run, main = generator_component("popular")

if __name__ == "__main__":
    sys.exit(main())
