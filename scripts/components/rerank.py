"""``python -m scripts.components.rerank``: the rerank component (code: :mod:`encore.components.rerank`)."""

import runpy

from encore.components.rerank import run  # noqa: F401  (the component itself, for code that imports it from here)

if __name__ == "__main__":
    runpy.run_module("encore.components.rerank", run_name="__main__", alter_sys=True)
