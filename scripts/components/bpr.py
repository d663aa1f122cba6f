"""bpr: BPR from implicit: pairwise-ranking matrix-factorisation candidates and similar items.

Writes candidates, similar items, models and test metrics; see :mod:`scripts.core.generators`.
"""

from __future__ import annotations

import sys

from scripts.core.config import EncoreConfig
from scripts.core.generators import run_generator
from scripts.core.runner import Context, Result, component_main

NAME = "bpr"
DEPENDS_ON = ("prepare",)


def run(config: EncoreConfig, ctx: Context) -> Result:
    return run_generator(NAME, config, ctx)


if __name__ == "__main__":
    sys.exit(component_main(NAME))
