"""``python -m scripts.components.compare``: the compare component (code: :mod:`encore.components.compare`)."""

import runpy

from encore.components.compare import run  # noqa: F401  (the component itself, for code that imports it from here)

if __name__ == "__main__":
    runpy.run_module("encore.components.compare", run_name="__main__", alter_sys=True)
