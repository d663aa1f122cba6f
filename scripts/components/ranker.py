"""``python -m scripts.components.ranker``: the ranker component (code: :mod:`encore.components.ranker`)."""

import runpy

from encore.components.ranker import run  # noqa: F401  (the component itself, for code that imports it from here)

if __name__ == "__main__":
    runpy.run_module("encore.components.ranker", run_name="__main__", alter_sys=True)
