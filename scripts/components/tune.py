"""``python -m scripts.components.tune``: the tune component (code: :mod:`encore.components.tune`)."""

import runpy

from encore.components.tune import run  # noqa: F401  (the component itself, for code that imports it from here)

if __name__ == "__main__":
    runpy.run_module("encore.components.tune", run_name="__main__", alter_sys=True)
