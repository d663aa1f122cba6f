"""``python -m scripts.pipeline.runner``: kept for existing commands; the code is :mod:`encore.pipeline.cli`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("encore.pipeline", run_name="__main__", alter_sys=True)
