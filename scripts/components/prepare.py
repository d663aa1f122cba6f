"""``python -m scripts.components.prepare``: the prepare component (code: :mod:`encore.components.prepare`)."""

import runpy

from encore.components.prepare import run  # noqa: F401  (the component itself, for code that imports it from here)

if __name__ == "__main__":
    runpy.run_module("encore.components.prepare", run_name="__main__", alter_sys=True)
