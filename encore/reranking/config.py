"""``components.rerank``: the re-ranking component's settings (docs/reranking.md).

Every step is off at its neutral value: ``lambdas: [1.0]`` (no MMR), ``freshness_boosts:
[0.0]``, ``popularity_penalties: [0.0]``, ``exposure_ms: [0]``, ``cap_per_attribute: null``,
``content_candidates: 0`` (no new items from content; ``content_weights: [0.0]`` keeps them
below the ranker's candidates), an empty ``block_list`` and no ``rejections_file``. The grid
(:func:`encore.reranking.steps.settings_grid`: lambdas x boosts x penalties x content weights x
ms x ...) is evaluated on the ranker-target part and one setting is chosen by the rule: the
highest ``objective`` whose ``ndcg@10`` (``evaluation.primary_metric``) is within ``max_loss``
of the unre-ranked list's (a list of objectives: the highest sum of each one min-max scaled over
the grid); with
``match_content_on_cold_items``, among those, only settings whose cold-item ndcg@10 is at least
the ``content_from`` generator's on the same target part (when any is). With ``choose_on:
heldout`` the target part is the held-out slice of target users the scoring model never trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from encore.config.types import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Strict, UnitInterval

CoverageCost = Literal["relevance", "chance"]
"""What the coverage fill weighs a given-away place by (``components.rerank.coverage_costs``)."""

OBJECTIVES = ("diversity", "catalog_coverage", "novelty", "new_item_exposure", "cold_items.ndcg", "accuracy")
"""What the rule maximises (at ``exposure_k``): the beyond-accuracy metrics of the evaluator, or
``accuracy``, the primary metric itself (with ``match_content_on_cold_items``: the most accurate
setting that matches the content generator on cold items)."""


class RerankConfig(Strict):
    """The re-ranking component after ``ranker`` (off by default: ``enabled: true`` adds it)."""

    enabled: bool = False
    block_list: list[str] = Field(default_factory=list)
    """Raw item ids nobody is recommended."""
    rejections_file: Path | None = None
    """CSV with columns ``user,item`` (raw ids): items each user rejected (dislike, block)."""
    embeddings_from: str | None = "item2item"
    """Generator instance whose item vectors MMR uses (item2item: the tag SVD space; als, bpr: factors)."""
    content_from: str | None = "item2item"
    """Generator instance whose candidates on items without listens join the lists (new items)."""
    content_candidates: NonNegativeInt = 20
    lambdas: list[UnitInterval] = Field(default_factory=lambda: [1.0, 0.9, 0.8, 0.7, 0.5])
    freshness_boosts: list[NonNegativeFloat] = Field(default_factory=lambda: [0.0, 0.2, 0.5])
    exposure_ms: list[NonNegativeInt] = Field(default_factory=lambda: [0, 1, 2])
    freshness_half_life_days: PositiveFloat = 30.0
    new_days: PositiveFloat = 30.0
    """An item is new when first listened to fewer than this many days before the stage's last event."""
    exposure_k: PositiveInt = 10
    cap_per_attribute: PositiveInt | None = None
    """At most this many items per top tag (where the candidates allow it); null = no cap."""
    objective: str | list[str] = "diversity"
    """What the rule maximises; a list: the sum of each one min-max scaled over the grid."""
    max_loss: Annotated[float, Field(ge=0, lt=1)] = 0.02
    # New keys: left out of the resolved config at their defaults (fingerprints do not change).
    popularity_penalties: list[NonNegativeFloat] = Field(default_factory=lambda: [0.0],
                                                         exclude_if=lambda values: values == [0.0])
    """``relevance -= penalty * log-popularity`` grid; [0.0] = off."""
    content_weights: list[NonNegativeFloat] = Field(default_factory=lambda: [0.0],
                                                    exclude_if=lambda values: values == [0.0])
    """New items' relevance = weight * their content score scaled to [0, 1] (competing with the
    ranker's candidates); [0.0] = below every ranker candidate."""
    exposure_caps: list[Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=lambda: [1.0], exclude_if=lambda values: values == [1.0])
    """Grid of the global exposure cap: the share of the users' top ``exposure_k`` lists one item may
    appear in, filled greedily position by position in relevance order; 1.0 = off."""
    content_max_ranks: list[NonNegativeInt] = Field(default_factory=lambda: [0],
                                                    exclude_if=lambda values: values == [0])
    """Grid: new items the ``content_from`` generator ranks at most this high (among all its items)
    are placed at that rank of the list; 0 = off (``content_weights`` decide)."""
    content_min_ranks: list[PositiveInt] = Field(default_factory=lambda: [1], exclude_if=lambda values: values == [1])
    """Grid, with ``content_max_ranks``: the first place a placed new item may take (the j-th placed
    item of a list lands at ``max(its content rank, this + j)``): above it the ranker's best items
    stay; 1 = at the content rank."""
    coverage_slots: list[NonNegativeInt] = Field(default_factory=lambda: [0], exclude_if=lambda values: values == [0])
    """Grid of the coverage fill: how many of the last places of every top ``exposure_k`` may go to
    items in nobody's top ``exposure_k`` (each such item to the one list that loses least); 0 = off."""
    coverage_copies: list[PositiveInt] = Field(default_factory=lambda: [1], exclude_if=lambda values: values == [1])
    """Grid, with ``coverage_slots``: in how many top ``exposure_k`` lists the fill puts each item it
    gives places to (an item shown in one list is seen only if that list's user comes back)."""
    coverage_active_days: list[NonNegativeFloat | None] = Field(default_factory=lambda: [None],
                                                                exclude_if=lambda values: values == [None])
    """Grid, with ``coverage_slots``: the fill counts and fills only the lists of users whose last
    event in the stage is at most this many days old -- an item in an idle user's list is seen by
    nobody; null = every user's."""
    coverage_active_first: list[bool] = Field(default_factory=lambda: [False],
                                              exclude_if=lambda values: values == [False])
    """Grid, with ``coverage_active_days``: true fills the active users' lists first and then every
    other list with the items still in nobody's top ``exposure_k`` (an item goes to a list likely to
    be seen where one can take it, and to some list otherwise); false: only the active users' lists."""
    coverage_costs: list[CoverageCost] = Field(default_factory=lambda: ["relevance"],
                                               exclude_if=lambda values: values == ["relevance"])
    """Grid, with ``coverage_slots``: what the fill weighs a given-away place by -- ``relevance``,
    the ranker's score scaled per user to [0, 1] (every list's best item at 1, so lists are compared
    by shape, not by what they expect), or ``chance``, the ranker's hit probability (needs
    ``components.ranker.loss: Logloss``): the place goes where the ranker expects fewest hits lost."""
    coverage_max_costs: list[PositiveFloat | None] = Field(default_factory=lambda: [None],
                                                           exclude_if=lambda values: values == [None])
    """Grid, with ``coverage_slots``: the most one given-away place may cost, in ``coverage_costs``'
    units (with ``chance``: the expected hits lost); a list passes over a dearer candidate, so the
    fill spends places where they are cheap rather than the same number in every list; null = no
    limit."""
    release_horizon_days: NonNegativeFloat | None = Field(default=None, exclude_if=lambda value: value is None)
    """With release dates in the data (catalogue metadata): an item is a candidate of a stage's lists
    only if it is released at most this many days after the stage's last event — how long a list is
    served before it is recomputed (offline, the window it is scored on). null: no release rule."""
    choice_window_days: PositiveFloat | None = Field(default=None, exclude_if=lambda value: value is None)
    """Score the grid only on the target events within this many days of the base stage's last
    event: a list is judged by the users who come back while it is served, so with a target window
    longer than the test window, the whole target part scores more of the users a list is made for
    than test does, and the rule overrates a fill that gives an item to one list. Set it to the
    test window's length (needs timestamps); null: the whole target window."""
    match_content_on_cold_items: bool = Field(default=False, exclude_if=lambda value: not value)
    """The rule also asks for the content generator's cold-item ndcg@10 on the target part."""
    choose_on: Literal["target", "heldout"] = Field(default="target", exclude_if=lambda value: value == "target")
    """Whose lists the grid is scored on: ``target``, every ranker-target user, ranked by the served
    ranker (which trained on their target labels); ``heldout``, the seeded ``components.ranker.
    policy_fraction`` of them, ranked by a trial ranker trained without their rows (the ranker
    writes it only then; the same slice and trial model as the ranker's segment policy)."""
    heldout_slices: PositiveInt = Field(default=1, exclude_if=lambda value: value == 1)
    """With ``choose_on: heldout``: how many disjoint ``policy_fraction`` slices of the target users
    are held out, each ranked by a trial ranker trained without it (one more ranker fit each); 1 =
    the segment policy's slice; ``ceil(1 / policy_fraction)`` = every target user (cross-fitting)."""

    @field_validator("lambdas", "freshness_boosts", "exposure_ms", "popularity_penalties", "content_weights",
                     "exposure_caps", "content_max_ranks", "content_min_ranks", "coverage_slots",
                     "coverage_copies", "coverage_active_days", "coverage_active_first", "coverage_costs",
                     "coverage_max_costs")
    @classmethod
    def _not_empty(cls, values: list) -> list:
        if not values:
            raise ValueError("give at least one value (the neutral one switches the step off)")
        return values

    @field_validator("objective")
    @classmethod
    def _known_objective(cls, names: str | list[str]) -> str | list[str]:
        for name in [names] if isinstance(names, str) else names:
            if name not in OBJECTIVES:
                raise ValueError(f"'{name}' is not one of {', '.join(OBJECTIVES)}")
        if not names:
            raise ValueError("give at least one objective")
        return names

    def objectives(self, primary: str) -> list[str]:
        """The objective metric names at ``exposure_k`` (e.g. ``catalog_coverage@10``); ``accuracy``
        is ``primary`` (``evaluation.primary_metric``)."""
        names = [self.objective] if isinstance(self.objective, str) else self.objective
        return [primary if name == "accuracy" else f"{name}@{self.exposure_k}" for name in names]
