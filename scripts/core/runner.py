"""Compatibility name for :mod:`scripts.pipeline.component`; will be removed.

The pipeline machinery moved to the pipeline layer (``scripts/pipeline/``). This module only
re-exports the two data types for components not yet updated (``register``, ``promote``);
it is the one module of ``scripts/core`` allowed to name the pipeline layer (see
``tests/test_layers.py``). New code imports from :mod:`scripts.pipeline.component`.
"""

from scripts.pipeline.component import Context, Result

__all__ = ["Context", "Result"]
