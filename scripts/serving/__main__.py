"""``python -m scripts.serving``: kept for existing commands; the service is :mod:`encore.serving`."""

import runpy

runpy.run_module("encore.serving", run_name="__main__", alter_sys=True)
