"""The names of the ranking metrics (``<name>@<k>`` in every result key), declared once.

Apart from their functions (:mod:`encore.evaluation.metrics.accuracy` maps each name to one)
so that the config can check ``evaluation.primary_metric`` without importing the metrics'
numerical code.
"""

from __future__ import annotations

RANKING_METRIC_NAMES: tuple[str, ...] = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")


def metric_key(name: str) -> str:
    """``ndcg@10`` -> ``ndcg_at_10``: the form results are stored under (MLflow metric names may not
    contain '@'; ``tune``'s trial table uses the same keys)."""
    return name.replace("@", "_at_")
