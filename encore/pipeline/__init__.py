"""The pipeline: which components run (:mod:`.catalogue`), their reuse keys
(:mod:`.reuse_keys`, :mod:`.lineage`), running them (:mod:`.execution`, :mod:`.folds`) and
the command line (:mod:`.cli`, ``python -m encore.pipeline``).

The names below are imported on first use: every component imports
:mod:`encore.pipeline.component`, which runs this file, and must not thereby load the
execution code, tracking and MLflow (nor make them look like part of its reuse key).
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC: dict[str, str] = {
    "ComponentFailed": "component",
    "Context": "component",
    "Result": "component",
    "all_components": "catalogue",
    "dependencies": "catalogue",
    "enabled": "catalogue",
    "generator_names": "catalogue",
    "pipeline_components": "catalogue",
    "fingerprint": "reuse_keys",
    "output_dir": "reuse_keys",
    "tuned": "reuse_keys",
    "run_component": "execution",
    "run_pipeline": "execution",
    "component_main": "cli",
    "main": "cli",
}
"""Public name -> the submodule that defines it."""

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
