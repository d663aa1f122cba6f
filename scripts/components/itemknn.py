"""itemknn: Item-kNN from implicit (cosine, BM25 or TF-IDF co-listening similarity).

Writes candidates, similar items, models and test metrics; see :mod:`scripts.core.generators`.
"""

import sys

from scripts.core.generators import generator_component

NAME, DEPENDS_ON, run, main = generator_component("itemknn")

if __name__ == "__main__":
    sys.exit(main())
