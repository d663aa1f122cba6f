"""Deprecated: ``scripts.core`` became the :mod:`encore` package (0.2.0); removed in 0.3.0.

``import scripts.core.X`` (and ``python -m scripts.core.server``) still work for one release: each
old name is an alias of the module it moved to, with a :class:`DeprecationWarning` naming it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

MOVED = {
    "scripts.core": "encore",
    "scripts.core.arrays": "encore.arrays",
    "scripts.core.config": "encore.config.experiment",
    "scripts.core.data": "encore.data",
    "scripts.core.data.common": "encore.data.parsing",
    "scripts.core.data.config": "encore.data.dataset_config",
    "scripts.core.data.download": "encore.data.fetching",
    "scripts.core.data.events": "encore.data.events",
    "scripts.core.data.lastfm1k": "encore.data.lastfm1k",
    "scripts.core.data.lastfm2k": "encore.data.lastfm2k",
    "scripts.core.data.lastfm360k": "encore.data.lastfm360k",
    "scripts.core.data.spark_events": "encore.data.spark_events",
    "scripts.core.data.synthetic": "encore.data.synthetic",
    "scripts.core.data.tabular": "encore.data.tabular",
    "scripts.core.data.types": "encore.data.dataset",
    "scripts.core.data.yandex": "encore.data.yandex",
    "scripts.core.envfile": "encore.config.envfile",
    "scripts.core.evaluation": "encore.evaluation.evaluator",
    "scripts.core.features": "encore.ranking.features",
    "scripts.core.generators": "encore.candidates",
    "scripts.core.io": "encore.io",
    "scripts.core.lineage": "encore.lineage",
    "scripts.core.metrics": "encore.evaluation.metrics",
    "scripts.core.metrics.beyond": "encore.evaluation.metrics.beyond_accuracy",
    "scripts.core.metrics.ranking": "encore.evaluation.metrics.accuracy",
    "scripts.core.metrics.reporting": "encore.evaluation.metrics.reporting",
    "scripts.core.metrics.significance": "encore.evaluation.significance",
    "scripts.core.outputs": "encore.outputs",
    "scripts.core.policy": "encore.ranking.segment_policy",
    "scripts.core.pooling": "encore.evaluation.fold_pooling",
    "scripts.core.prepared": "encore.data.prepared",
    "scripts.core.progress": "encore.progress",
    "scripts.core.ranker": "encore.ranking.model",
    "scripts.core.recommenders": "encore.recommenders",
    "scripts.core.recommenders._factorization": "encore.recommenders.factorization",
    "scripts.core.recommenders.als": "encore.recommenders.als",
    "scripts.core.recommenders.base": "encore.recommenders.base",
    "scripts.core.recommenders.bpr": "encore.recommenders.bpr",
    "scripts.core.recommenders.ease": "encore.recommenders.ease",
    "scripts.core.recommenders.friends": "encore.recommenders.friends",
    "scripts.core.recommenders.helpers": "encore.recommenders.kernels",
    "scripts.core.recommenders.item2item": "encore.recommenders.item2item",
    "scripts.core.recommenders.itemknn": "encore.recommenders.itemknn",
    "scripts.core.recommenders.popular": "encore.recommenders.popular",
    "scripts.core.recommenders.registry": "encore.recommenders.kinds",
    "scripts.core.recommenders.spec": "encore.recommenders.generator_config",
    "scripts.core.recommenders.userknn": "encore.recommenders.userknn",
    "scripts.core.recommenders.weighting": "encore.recommenders.weighting",
    "scripts.core.registry": "encore.tracking.model_registry",
    "scripts.core.resources": "encore.resources",
    "scripts.core.serving_model": "encore.serving.pyfunc",
    "scripts.core.spark": "encore.data.spark_session",
    "scripts.core.splits": "encore.evaluation.splits",
    "scripts.core.tracking": "encore.tracking.runs",
    "scripts.core.tracking_client": "encore.tracking.client",
}
"""Old module name -> the module it is now."""


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(f"{spec.name} is deprecated and will be removed in Encore 0.3: import {MOVED[spec.name]}",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """The module is the new one, already executed."""


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())
