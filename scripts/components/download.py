"""``python -m scripts.components.download``: the download component (code: :mod:`encore.components.download`)."""

import runpy

from encore.components.download import run  # noqa: F401  (the component itself, for code that imports it from here)

if __name__ == "__main__":
    runpy.run_module("encore.components.download", run_name="__main__", alter_sys=True)
