"""``python -m scripts.pipeline.generator``: kept for existing commands.

The code is :mod:`encore.components.generator`.
"""

import runpy

if __name__ == "__main__":
    runpy.run_module("encore.components.generator", run_name="__main__", alter_sys=True)
