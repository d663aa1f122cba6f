"""item2item: Item-to-item over item features: TF-IDF/BM25 tags -> TruncatedSVD -> NearestNeighbors (cosine).

Writes candidates, similar items, models and test metrics; see :mod:`scripts.core.generators`.
"""

import sys

from scripts.core.generators import generator_component

NAME, DEPENDS_ON, run, main = generator_component("item2item")

if __name__ == "__main__":
    sys.exit(main())
