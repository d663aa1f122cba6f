"""``python -m scripts.components.register``: the register component (code: :mod:`encore.components.register`)."""

import runpy

from encore.components.register import run  # noqa: F401  (the component itself, for code that imports it from here)

if __name__ == "__main__":
    runpy.run_module("encore.components.register", run_name="__main__", alter_sys=True)
