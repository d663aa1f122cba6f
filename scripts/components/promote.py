"""``python -m scripts.components.promote``: the promote component (code: :mod:`encore.components.promote`)."""

import runpy

from encore.components.promote import run  # noqa: F401  (the component itself, for code that imports it from here)

if __name__ == "__main__":
    runpy.run_module("encore.components.promote", run_name="__main__", alter_sys=True)
