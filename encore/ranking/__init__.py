"""The ranking stage: CatBoost over the merged candidates of the generators.

:mod:`.stage` (candidates, features and labels batch by batch; training set; ranked lists),
:mod:`.features` (the built-in feature groups), :mod:`.feature_groups` (the feature-group
protocol and registry), :mod:`.model` (training and top-k), :mod:`.segment_policy` (ranker or
fallback per user segment).

The plug-in API of a feature group: ``from encore.ranking import FeatureGroup, StageData``.
Importing this package imports no model code (the built-in groups load when a stage runs).
"""

from encore.ranking.feature_groups import FeatureGroup, FeatureGroupError, StageData, feature_group_class

__all__ = ["FeatureGroup", "FeatureGroupError", "StageData", "feature_group_class"]
