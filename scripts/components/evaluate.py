"""``python -m scripts.components.evaluate``: the evaluate component (code: :mod:`encore.components.evaluate`)."""

import runpy

from encore.components.evaluate import run  # noqa: F401  (the component itself, for code that imports it from here)

if __name__ == "__main__":
    runpy.run_module("encore.components.evaluate", run_name="__main__", alter_sys=True)
