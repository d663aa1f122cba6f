"""rerank: the ranker's lists made into the final lists (docs/reranking.md, "Re-ranking").

The steps (:mod:`encore.reranking.steps`): exclusions (``block_list``, each user's rejections
from ``rejections_file``), new items from content (``content_from``'s candidates on items
nobody has listened to, below the ranker's candidates or on their scale by ``content_weights``),
a freshness boost by item age, a penalty on item popularity, MMR diversity over
``embeddings_from``'s item vectors with an optional cap per top tag, and a new-item exposure floor.

The trade-off is chosen honestly: every setting of the grid (:func:`~encore.reranking.steps.settings_grid`) re-ranks
the ranker's base-stage lists (its model scoring base-stage candidates, features from base; test
is never read) of every user -- the population the steps across users spread over, as on test --
and is scored on the **ranker-target users**; the rule (:mod:`encore.reranking.rule`) picks the
highest ``objective`` within ``max_loss`` of the unre-ranked lists' primary metric there.
With ``choose_on: heldout`` the target users are those of the ranker's held-out slices, each
ranked by the trial ranker trained without it (``heldout_slices``; docs/reranking.md, "Choosing
on held-out target users"). Test is evaluated once, at that setting, with a paired comparison
against the ranker.

Writes ``recommendations.parquet`` (every user), ``tradeoff.csv/.png``, ``chosen.json``,
``significance.json``, ``metrics.json``, and ``item_side.npz`` + ``serving.json``: what the
serving model re-ranks with (the same function, the same inputs: the same lists).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from catboost import CatBoostClassifier, CatBoostRanker

from encore.config.experiment import ConfigError, EncoreConfig
from encore.data.prepared import EVAL_PART, PreparedData, Stage, to_csr
from encore.evaluation import metrics
from encore.evaluation.evaluator import Evaluator, lists_from_frame
from encore.io import ParquetSink, write_json, write_parquet
from encore.outputs import GeneratorOutput, RankerOutput, RerankOutput
from encore.pipeline.component import Context, Result
from encore.ranking.feature_groups import SECONDS_PER_DAY
from encore.ranking.model import TrainedRanker
from encore.ranking.segment_policy import SegmentPolicy, cold_users
from encore.ranking.stage import HELD_OUT_MODEL, HELD_OUT_USERS, rank_users, ranker_inputs
from encore.recommenders import recommender_class
from encore.reranking.rule import choose
from encore.reranking.spread import full_chain, served_keys, split_at_cap, with_ranked_content
from encore.reranking.steps import (
    ItemSide,
    Lists,
    Settings,
    lists_from_scores,
    popularity,
    rejection_keys,
    rerank,
    settings_grid,
)

NAME = "rerank"
log = logging.getLogger(__name__)
BATCH_USERS = 512
"""Users re-ranked at once: the MMR similarity block is (users, width, width)."""


def _side_instances(config: EncoreConfig) -> list[str]:
    own = config.components.rerank
    names = [own.embeddings_from, own.content_from if own.content_candidates else None]
    return list(dict.fromkeys(n for n in names if n is not None))


def DEPENDS_ON(config: EncoreConfig) -> list[str]:
    return list(dict.fromkeys([*ranker_inputs(config), "ranker", *_side_instances(config)]))


def input_files(config: EncoreConfig) -> dict[str, Path]:
    """The rejections file (reuse is keyed on its content)."""
    path = config.components.rerank.rejections_file
    return {"rejections": path} if path is not None else {}


# ------------------------------------------------------------------------------ inputs
def item_vectors(model: object, where: str) -> np.ndarray:
    """L2-normalised item vectors of a fitted generator: item2item's tag SVD embeddings or a
    factorisation's item factors."""
    vectors = getattr(model, "embeddings_", None)
    if vectors is None:
        vectors = getattr(model, "item_factors", None)
    if vectors is None:
        raise ConfigError(f"{where}: kind '{getattr(model, 'name', type(model).__name__)}' has no item vectors "
                          "(use item2item, als or bpr), or set it to null to switch MMR off")
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def unreleased(config: EncoreConfig, prepared: PreparedData, stage: Stage) -> np.ndarray:
    """Items released more than ``release_horizon_days`` after the stage's last event: not in the
    catalogue while the stage's lists are served (empty without the rule, release dates or timestamps)."""
    horizon = config.components.rerank.release_horizon_days
    release, now = prepared.item_release_seconds(), prepared.last_event_seconds(stage)
    if horizon is None or release is None or now is None:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.nan_to_num(release, nan=-np.inf) > now + horizon * SECONDS_PER_DAY)


def new_items(config: EncoreConfig, prepared: PreparedData, stage: Stage) -> np.ndarray:
    """Boolean (n_items,): what content may propose as new in ``stage``'s lists: items nobody listened
    to in the stage, less those the release rule leaves out (:func:`unreleased`) and, where the
    catalogue has a release date, those out for ``new_days`` or more (never heard, but not new)."""
    new = prepared.item_listeners(stage) == 0
    new[unreleased(config, prepared, stage)] = False
    release, now = prepared.item_release_seconds(), prepared.last_event_seconds(stage)
    if release is not None and now is not None:
        new &= ~(np.nan_to_num(now - release, nan=-np.inf) >= config.components.rerank.new_days * SECONDS_PER_DAY)
    return new


def item_side(config: EncoreConfig, inputs: Mapping[str, Path], prepared: PreparedData, stage: Stage) -> ItemSide:
    """Ages (days between an item's release, where the data has it, else its first listen, and the
    stage's last event; 0 for an item not yet released or never listened to; nan without
    timestamps), log-popularity (listeners), embeddings and top tags, from what ``stage`` may see."""
    own = config.components.rerank
    listeners = prepared.item_listeners(stage)
    ages = np.full(prepared.n_items, np.nan)
    now = prepared.last_event_seconds(stage)
    if now is not None:
        frame = prepared.part("base" if stage == "base" else "train")
        seconds = frame["timestamp"].astype("int64").to_numpy() // 10**9
        first = pd.Series(seconds).groupby(frame["item"].to_numpy()).min()
        ages[first.index.to_numpy()] = (now - first.to_numpy()) / SECONDS_PER_DAY
    ages[listeners == 0] = 0.0
    release = prepared.item_release_seconds()
    if now is not None and release is not None:  # the catalogue's release date beats the first listen
        known = ~np.isnan(release)
        ages[known] = np.maximum(now - release[known], 0.0) / SECONDS_PER_DAY
    embeddings = None
    if own.embeddings_from is not None:
        section = config.components.generator(own.embeddings_from)
        model = GeneratorOutput(inputs[own.embeddings_from]).model(stage, recommender_class(section.kind))
        embeddings = item_vectors(model, "components.rerank.embeddings_from")
    features = prepared.item_features(stage)
    attribute = np.asarray(features.argmax(axis=1)).ravel().astype(np.int64)
    attribute[np.diff(features.indptr) == 0] = -1
    return ItemSide(age_days=ages, embeddings=embeddings, attribute=attribute, popularity=popularity(listeners))


def _indexes(raw: pd.Series, ids: pd.DataFrame) -> np.ndarray:
    """Positions of the raw ids in ``ids`` (its ``raw_id`` column), -1 when unknown."""
    lookup = pd.Series(ids.index.to_numpy(), index=ids["raw_id"].astype(str).to_numpy())
    return raw.astype(str).map(lookup).fillna(-1).to_numpy(np.int64)


def exclusions(config: EncoreConfig, prepared: PreparedData) -> tuple[np.ndarray, np.ndarray]:
    """Blocked item indexes and the sorted rejection keys (user * n_items + item)."""
    own = config.components.rerank
    blocked = _indexes(pd.Series(own.block_list, dtype=str), prepared.items)
    if (blocked < 0).any():
        log.info("rerank: %d block_list ids are not in the dataset", int((blocked < 0).sum()))
    if own.rejections_file is None:
        return blocked[blocked >= 0], np.zeros(0, dtype=np.int64)
    path = own.rejections_file
    try:
        frame = pd.read_csv(path, dtype=str)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"components.rerank.rejections_file: cannot read {path}: {exc}") from None
    missing = {"user", "item"} - set(frame.columns)
    if missing:
        raise ConfigError(f"{path}: missing column(s) {', '.join(sorted(missing))}; expected user,item (raw ids)")
    users, items = _indexes(frame["user"], prepared.users), _indexes(frame["item"], prepared.items)
    known = (users >= 0) & (items >= 0)
    if not known.all():
        log.info("rerank: %d of %d rejections in %s name users or items not in the dataset", int((~known).sum()),
                 len(frame), path)
    return blocked[blocked >= 0], rejection_keys(users[known], items[known], prepared.n_items)


def padded(frame: pd.DataFrame, users: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(user, item, score, rank) -> ``(len(users), width)`` items (-1 padded) and scores."""
    items = lists_from_frame(frame, users, width)
    scores = np.zeros(items.shape)
    rows = np.searchsorted(users, frame["user"].to_numpy())
    ranks = frame["rank"].to_numpy() - 1
    keep = (rows < len(users)) & (ranks < width)
    keep[keep] &= users[rows[keep]] == frame["user"].to_numpy()[keep]
    scores[rows[keep], ranks[keep]] = frame["score"].to_numpy()[keep]
    return items, scores


@dataclass
class StageLists:
    """The lists of one stage before re-ranking, for the sorted ``users``: the ranker's
    (``items``/``scores``) and the content candidates on never-listened items."""

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    content_items: np.ndarray
    content_scores: np.ndarray
    content_ranks: np.ndarray
    """The content generator's rank (from 1, among all its items) of each content candidate."""
    idle_days: np.ndarray
    """Days between each user's last event in the stage and the stage's last event (nan: none, or
    no timestamps): who the coverage fill counts as active."""
    probabilities: np.ndarray
    """Per user: are its ``scores`` the ranker's hit probabilities (Logloss, and not a fallback
    user's list)? :meth:`chance` derives them only when a setting asks for them."""

    def rows(self, users: np.ndarray) -> StageLists:
        at = np.searchsorted(self.users, users)
        return StageLists(users, self.items[at], self.scores[at], self.content_items[at], self.content_scores[at],
                          self.content_ranks[at], self.idle_days[at], self.probabilities[at])

    def chance(self, rows: slice) -> np.ndarray:
        """The ranker's hit probability of each of the ``rows``' items (nan where the ranker did not
        score the cell: a fallback user's list, a completion)."""
        items, scores = self.items[rows], self.scores[rows]
        return np.where(self.probabilities[rows, None] & (items >= 0), scores, np.nan)

    def active_users(self, days: float | None) -> np.ndarray | None:
        """The users whose last event is at most ``days`` old (None: no limit)."""
        return None if days is None else self.users[self.idle_days <= days]


def stage_lists(config: EncoreConfig, inputs: Mapping[str, Path], prepared: PreparedData, stage: Stage,
                ranked: pd.DataFrame, users: np.ndarray, fallback: np.ndarray | None = None) -> StageLists:
    """The ranker's lists ``ranked`` for ``users`` and, with ``content_candidates`` > 0, the
    ``content_from`` instance's best candidates among items nobody listened to in ``stage``.
    ``fallback`` (per user; None: nobody): whose list is the fallback generator's, not the ranker's."""
    own = config.components.rerank
    items, scores = padded(ranked, users, config.components.ranker.top_k)
    probabilities = np.full(len(users), config.components.ranker.loss == "Logloss")
    if fallback is not None:
        probabilities &= ~np.asarray(fallback, dtype=bool)
    content_items = np.full((len(users), 0), -1, dtype=np.int64)
    content_scores = np.zeros(content_items.shape)
    content_ranks = np.zeros(content_items.shape, dtype=np.int64)
    if own.content_candidates and own.content_from is not None:
        proposed = GeneratorOutput(inputs[own.content_from]).candidates(stage, users=users)
        cold = new_items(config, prepared, stage)
        proposed = proposed[cold[proposed["item"].to_numpy()]].sort_values(["user", "rank"], kind="stable")
        original = proposed["rank"].to_numpy()
        proposed = proposed.assign(rank=proposed.groupby("user").cumcount() + 1)
        content_items, content_scores = padded(proposed, users, own.content_candidates)
        content_ranks = padded(proposed.assign(score=original.astype(np.float64)), users,
                               own.content_candidates)[1].astype(np.int64)
    return StageLists(users, items, scores, content_items, content_scores, content_ranks,
                      idle_days(prepared, stage)[users], probabilities)


def final_stage(config: EncoreConfig, inputs: Mapping[str, Path], prepared: PreparedData,
                blocked: np.ndarray) -> tuple[StageLists, ItemSide, np.ndarray]:
    """What the final lists are made from: the ranker's train-stage lists of every user it ranked,
    the item side they are re-ranked with, and the items kept out of them: ``blocked`` and those
    released after the horizon (left out of these lists, not blocked in the bundle: the service's
    catalogue has an item from its release on)."""
    out = RankerOutput(inputs["ranker"])
    ranked = out.recommendations()
    users = np.unique(ranked["user"].to_numpy()).astype(np.int64)
    fallback = None
    if config.components.ranker.fallback is not None:  # as the ranker chose per segment (rank_users)
        policy = SegmentPolicy(choice=out.policy()["choice"])
        fallback = policy.uses_fallback(cold_users(prepared.user_items("train"), users))
    lists = stage_lists(config, inputs, prepared, "train", ranked, users, fallback)
    side = item_side(config, inputs, prepared, "train")
    return lists, side, np.union1d(blocked, unreleased(config, prepared, "train"))


def idle_days(prepared: PreparedData, stage: Stage) -> np.ndarray:
    """``(n_users,)``: days between each user's last event in ``stage`` and the stage's last event
    (nan: no event in the stage, or no timestamps)."""
    idle = np.full(prepared.n_users, np.nan)
    now = prepared.last_event_seconds(stage)
    if now is not None:
        frame = prepared.part("base" if stage == "base" else "train")
        last = pd.Series(frame["timestamp"].astype("int64").to_numpy() // 10**9).groupby(frame["user"].to_numpy()).max()
        idle[last.index.to_numpy()] = (now - last.to_numpy()) / SECONDS_PER_DAY
    return idle


PER_USER_FIELDS = ("top_k", "mmr_lambda", "freshness_boost", "freshness_half_life_days", "cap_per_attribute",
                   "popularity_penalty", "content_weight", "content_max_rank", "content_min_rank")
"""The :class:`Settings` fields the steps before the exposure cap read (the new items' placement,
freshness, the popularity penalty, MMR): settings equal on these share :func:`before_cap`'s
lists (``tests/components/test_rerank.py`` changes every other field and gets the same lists)."""


def before_cap_key(settings: Settings) -> tuple:
    """What :func:`before_cap`'s lists are computed from: the per-user fields."""
    return tuple(getattr(settings, name) for name in PER_USER_FIELDS)


def before_cap(lists: StageLists, side: ItemSide, settings: Settings, *, blocked: np.ndarray,
               rejected: np.ndarray, n_items: int, with_chance: bool | None = None) -> Lists:
    """Every user's lists after the steps per user (batch by batch of users): what the exposure
    cap and the steps after it start from. They carry the ranker's probabilities ``with_chance``
    (None: where ``settings``' fill weighs by them; only the fill reads them)."""
    per_user = split_at_cap(full_chain(settings, blocked=blocked, rejected=rejected, n_items=n_items))[0]
    exclude = per_user[0]  # the exclusions, before the new items are placed by rank
    weighs_by_chance = settings.coverage_cost == "chance" if with_chance is None else with_chance
    n = len(lists.users)
    whole: dict[str, np.ndarray] = {}
    for start in range(0, max(n, 1), BATCH_USERS):  # one (empty) batch for no users: the arrays' shapes
        rows = slice(start, start + BATCH_USERS)
        # The probabilities only where the fill weighs by them: an (n, top_k) array less otherwise.
        chance = lists.chance(rows) if weighs_by_chance else None
        ranked = exclude(lists_from_scores(lists.users[rows], lists.items[rows], lists.scores[rows], chance), side)
        batch = with_ranked_content(ranked, lists.content_items[rows], lists.content_scores[rows],
                                    lists.content_ranks[rows], settings)
        for step in per_user:
            batch = step(batch, side)
        cells = {"items": batch.items, "relevance": batch.relevance}
        if weighs_by_chance:
            cells["chance"] = batch.chance
        for name, part in cells.items():  # written into whole arrays: no list of batches to join at twice the size
            if name not in whole:
                whole[name] = np.empty((n, *part.shape[1:]), dtype=part.dtype)
            whole[name][rows] = part
    return Lists(users=np.asarray(lists.users, dtype=np.int64), items=whole["items"], relevance=whole["relevance"],
                 chance=whole.get("chance"))


def reranked(lists: StageLists, side: ItemSide, settings: Settings, *, blocked: np.ndarray, rejected: np.ndarray,
             n_items: int, served: dict[str, np.ndarray] | None = None, start: Lists | None = None) -> np.ndarray:
    """The re-ranked ``(len(users), top_k)`` lists (-1 padded): the per-user steps batch by batch
    of users (:func:`before_cap`; or ``start``, their result for a setting with the same
    :func:`before_cap_key`), the exposure cap and what follows it over every user at once. With
    ``served`` (a dict), the ``user * n_items + item`` keys the cap refused (``capped``) and the
    coverage fill promoted (``promoted``) are put in it (the service's input)."""
    active = lists.active_users(settings.coverage_active_days)
    across = split_at_cap(full_chain(settings, blocked=blocked, rejected=rejected, n_items=n_items,
                                     active_users=active))[1]
    whole = start if start is not None else before_cap(lists, side, settings, blocked=blocked, rejected=rejected,
                                                      n_items=n_items)
    if served is not None:
        # What the steps across users did, then the lists from it in the service's form: the same
        # lists (tests/reranking/test_served_equivalence.py), the cap and the fill computed once.
        served["capped"], served["promoted"] = served_keys(whole, side, settings, n_items, active)
        across = split_at_cap(full_chain(settings, blocked=blocked, rejected=rejected, n_items=n_items,
                                         capped=served["capped"], promoted=served["promoted"]))[1]
    return rerank(whole, side, across, settings.top_k)[0]


def grid_reranked(lists: StageLists, side: ItemSide, grid: Sequence[Settings], *, blocked: np.ndarray,
                  rejected: np.ndarray, n_items: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(index in grid, its re-ranked lists)`` for every setting of ``grid``, as :func:`reranked`
    gives them. The settings that share their per-user steps (:func:`before_cap_key`; a grid
    mostly varies the steps across users) re-rank from one computation of those, group by group,
    so one group's lists are held at a time: the groups' order, not the grid's."""
    groups: dict[tuple, list[int]] = {}
    for n, settings in enumerate(grid):
        groups.setdefault(before_cap_key(settings), []).append(n)
    for members in groups.values():
        start = before_cap(lists, side, grid[members[0]], blocked=blocked, rejected=rejected, n_items=n_items,
                           with_chance=any(grid[n].coverage_cost == "chance" for n in members))
        for n in members:
            yield n, reranked(lists, side, grid[n], blocked=blocked, rejected=rejected, n_items=n_items, start=start)
        del start


def held_out_slices(inputs: Mapping[str, Path]) -> tuple[np.ndarray, np.ndarray]:
    """The held-out target users (sorted) and the slice of each: whose trial model ranks them."""
    saved = np.load(RankerOutput(inputs["ranker"]).path / HELD_OUT_USERS)
    order = np.argsort(saved["users"], kind="stable")
    return saved["users"][order], saved["slice"][order]


def choice_users(config: EncoreConfig, inputs: Mapping[str, Path], prepared: PreparedData) -> np.ndarray:
    """The users the grid is scored on (sorted): every ranker-target user, or with ``choose_on:
    heldout`` the held-out ones, whom the ranker's trial models never trained on (its output)."""
    if config.components.rerank.choose_on == "heldout":
        return held_out_slices(inputs)[0]
    return prepared.eval_users("base")


def _saved_ranker(config: EncoreConfig, path: Path) -> TrainedRanker:
    model = CatBoostRanker() if config.components.ranker.loss == "YetiRank" else CatBoostClassifier()
    model.load_model(str(path))
    return TrainedRanker(model=model, feature_names=list(model.feature_names_), iterations=model.tree_count_,
                         validation_ndcg=None, n_rows=0, n_users=0, n_positives=0)


def target_ranked(config: EncoreConfig, inputs: Mapping[str, Path], prepared: PreparedData,
                  workdir: Path) -> pd.DataFrame:
    """The ranker's base-stage lists of **every** user (the population the steps across users
    spread over, as the train-stage lists on test): a saved model scoring their base-stage
    candidates (features from base only), as for its segment policy. The model is the served
    ranker's, or with ``choose_on: heldout`` each held-out slice's trial ranker for that slice's
    users (trained without its rows; the served one trained on their target labels, so its
    target-part lists flatter it) and the served one for everybody else."""
    out = RankerOutput(inputs["ranker"])
    users = np.arange(prepared.n_users, dtype=np.int64)
    parts = [(out.path / out.MODEL, users)]
    if config.components.rerank.choose_on == "heldout":
        held, slice_of = held_out_slices(inputs)
        parts = [(out.path / out.MODEL, users[~np.isin(users, held)])]
        parts += [(out.path / HELD_OUT_MODEL.format(slice=f"_{n}" if n else ""), held[slice_of == n])
                  for n in np.unique(slice_of)]
    scratch = workdir / ".target_lists.parquet"
    with ParquetSink(scratch) as sink:
        for model, part in parts:
            if len(part):
                rank_users(_saved_ranker(config, model), config, inputs, prepared, sink, stage="base", users=part)
    ranked = pd.read_parquet(scratch)
    scratch.unlink()
    return ranked.sort_values(["user", "rank"], kind="stable", ignore_index=True)


@dataclass
class ChoiceEvaluator(Evaluator):
    """The target part's evaluator over the users the choice is made on (``only``; None = every
    ranker-target user) and, with ``window_days``, over the target events within that many days of
    the stage's last event only: item statistics stay the stage's, only the rows averaged and the
    relevant pairs change."""

    only: np.ndarray | None = None
    window_days: float | None = None

    @cached_property
    def _window(self) -> sp.csr_matrix:
        """The relevant (n_users, n_items) pairs of the (windowed) target part."""
        every = self.prepared.relevant(self.stage)
        if self.window_days is None:
            return every
        part = self.prepared.part(EVAL_PART[self.stage])
        seconds = part["timestamp"].astype("int64").to_numpy() // 10**9
        end = self.prepared.last_event_seconds(self.stage) + self.window_days * SECONDS_PER_DAY
        return to_csr(part[seconds < end], every.shape, value=None)

    @cached_property
    def users(self) -> np.ndarray:
        every = np.flatnonzero(np.diff(self._window.indptr) > 0).astype(np.int64)
        return every if self.only is None else np.intersect1d(every, self.only)

    @cached_property
    def relevant(self) -> sp.csr_matrix:
        return self._window[self.users]


GRID_KEYS = ("mmr_lambda", "freshness_boost", "popularity_penalty", "content_weight", "exposure_m", "exposure_cap",
             "content_max_rank", "content_min_rank", "coverage_slots", "coverage_copies",
             "coverage_active_days", "coverage_active_first", "coverage_cost", "coverage_max_cost")
"""The grid's columns naming a setting (``tradeoff.csv``)."""
COLD_ITEMS = "cold_items"


def tradeoff(config: EncoreConfig, prepared: PreparedData, side: ItemSide, lists: StageLists, *,
             blocked: np.ndarray, rejected: np.ndarray,
             content_lists: tuple[np.ndarray, np.ndarray] | None = None,
             users: np.ndarray | None = None) -> tuple[pd.DataFrame, int, np.ndarray]:
    """Every grid setting's metrics on the ranker-target part (first row: the ranker's lists
    unre-ranked; with ``content_lists`` (sorted users, their lists), the content generator's own
    lists, a row ``content``), and the grid row the rule chooses. ``lists`` are every user's: the
    steps across users (the exposure cap, the coverage fill) spread over the population the lists
    are made for, as on test, and the target users are scored. ``cold_items.<primary>`` is the
    cold-item segment's primary metric (items without base listeners), when it has users. With
    ``users``, only those target users are scored (the held-out slice); with ``choice_window_days``,
    only the target events within that window. Also returns the users scored."""
    own = config.components.rerank
    primary = config.evaluation.primary_metric
    # Only the cut-offs the rule reads: every setting is evaluated, so every metric costs 1 + grid times.
    evaluator = ChoiceEvaluator(prepared, "base", tuple(sorted({int(primary.partition("@")[2]), own.exposure_k})),
                                only=users, window_days=own.choice_window_days)
    if own.choice_window_days is not None and not prepared.has_timestamps:
        raise ConfigError("components.rerank.choice_window_days: the dataset has no timestamps to window the "
                          "target part by; set it to null")
    if own.choice_window_days is not None and not len(evaluator.users):
        raise ConfigError(f"components.rerank.choice_window_days: no target events within {own.choice_window_days:g} "
                          "days of the base stage's last event to choose on; widen it")
    scored = np.searchsorted(lists.users, evaluator.users)  # every user is re-ranked, the target users scored
    objectives = own.objectives(primary)
    cold = f"{COLD_ITEMS}.{primary}"
    has_cold = evaluator.segments[COLD_ITEMS].n_users > 0

    def scores(items: np.ndarray) -> dict[str, float]:
        found = evaluator.evaluate(items)
        if has_cold:
            found[cold] = evaluator.evaluate(items, COLD_ITEMS)[primary]
        return found

    rows = [{"setting": "ranker"} | scores(lists.items[scored])]
    for objective in objectives:
        if objective not in rows[0]:
            raise ConfigError(f"components.rerank.objective: {objective} cannot be measured on this dataset "
                              "(diversity needs item tags)")
    grid = settings_grid(own, config.components.ranker.top_k)
    found: dict[int, dict] = {}
    for n, items in grid_reranked(lists, side, grid, blocked=blocked, rejected=rejected, n_items=prepared.n_items):
        settings = grid[n]
        row = found[n] = {"setting": "rerank"} | {key: getattr(settings, key) for key in GRID_KEYS}
        row |= scores(items[scored])
        log.info("rerank grid %d/%d: %s: %s %.4f, %s", len(found), len(grid), _named(settings), primary,
                 row[primary], ", ".join(f"{o} {row[o]:.4f}" for o in objectives))
    rows += [found[n] for n in range(len(grid))]
    if content_lists is not None:
        content_users, content_items = content_lists
        rows.append({"setting": "content"} | scores(content_items[np.searchsorted(content_users, evaluator.users)]))
    table = pd.DataFrame(rows)
    reference = None
    if own.match_content_on_cold_items and has_cold and content_lists is not None:
        reference = float(table.loc[table["setting"] == "content", cold].iloc[0])
    choice = choose(table, primary=primary, objectives=objectives, max_loss=own.max_loss,
                    cold_column=cold if reference is not None else None, cold_reference=reference)
    table["rule_score"] = choice.score
    table["within_loss"] = table.index.isin(choice.within)
    table["chosen"] = table.index == choice.chosen
    return table, choice.chosen, evaluator.users


def content_target_lists(config: EncoreConfig, inputs: Mapping[str, Path],
                         users: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``content_from`` generator's own base-stage top-k lists of ``users`` (its reference on
    the target part's cold items), or None without one."""
    own = config.components.rerank
    if own.content_from is None or not own.match_content_on_cold_items:
        return None
    proposed = GeneratorOutput(inputs[own.content_from]).candidates("base", users=users)
    return users, padded(proposed.sort_values(["user", "rank"], kind="stable"), users,
                         config.components.ranker.top_k)[0]


def target_tradeoff(config: EncoreConfig, inputs: Mapping[str, Path], prepared: PreparedData, workdir: Path,
                    excluded: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[pd.DataFrame, int, np.ndarray]:
    """The grid on the ranker-target part (:func:`tradeoff` of every user's base-stage lists),
    the row the rule chooses and the users it was scored on (:func:`choice_users`, with target
    events in ``choice_window_days``). ``excluded``: :func:`exclusions`, when the caller has read them."""
    blocked, rejected = exclusions(config, prepared) if excluded is None else excluded
    users = choice_users(config, inputs, prepared)
    lists, side, blocked = target_stage(config, inputs, prepared, workdir, blocked)
    return tradeoff(config, prepared, side, lists, blocked=blocked, rejected=rejected,
                    content_lists=content_target_lists(config, inputs, users), users=users)


def target_stage(config: EncoreConfig, inputs: Mapping[str, Path], prepared: PreparedData, workdir: Path,
                 blocked: np.ndarray) -> tuple[StageLists, ItemSide, np.ndarray]:
    """What the grid re-ranks on the target part, as :func:`final_stage` for test: every user's
    base-stage lists (:func:`target_ranked`), the item side they are re-ranked with, and the items
    kept out of them: ``blocked`` and those released after the horizon."""
    lists = stage_lists(config, inputs, prepared, "base", target_ranked(config, inputs, prepared, workdir),
                        np.arange(prepared.n_users, dtype=np.int64))
    return lists, item_side(config, inputs, prepared, "base"), np.union1d(blocked, unreleased(config, prepared, "base"))


def _same(value: float | None, cell: object) -> bool:
    """A setting's value against its ``tradeoff.csv`` cell (None is written as an empty cell)."""
    return pd.isna(cell) if value is None else value == cell


def _shown(value: object) -> str:
    return "none" if value is None else value if isinstance(value, str) else format(value, "g")


def _named(settings: Settings) -> str:
    return ", ".join(f"{key} {_shown(getattr(settings, key))}" for key in GRID_KEYS)


def settings_of(config: EncoreConfig, row: pd.Series) -> Settings:
    own = config.components.rerank
    return next(s for s in settings_grid(own, config.components.ranker.top_k)
                if all(_same(getattr(s, key), row[key]) for key in GRID_KEYS))


# ------------------------------------------------------------------------------ the component
def run(config: EncoreConfig, ctx: Context) -> Result:
    own = config.components.rerank
    primary = config.evaluation.primary_metric
    prepared = PreparedData(ctx.inputs["prepare"])
    out = RerankOutput(ctx.output)
    blocked, rejected = exclusions(config, prepared)

    # The choice: the ranker-target part only (with choose_on: heldout, its held-out slice).
    grid, chosen_row, target_users = target_tradeoff(config, ctx.inputs, prepared, out.path, (blocked, rejected))
    grid.to_csv(out.path / out.GRID, index=False)
    settings = settings_of(config, grid.loc[chosen_row])
    objectives = own.objectives(primary)
    objective = objectives[0] if len(objectives) == 1 else objectives
    shown = list(dict.fromkeys([primary, *objectives,
                                *([f"{COLD_ITEMS}.{primary}"] if f"{COLD_ITEMS}.{primary}" in grid else [])]))
    _plot(grid, primary, objectives[0], own.max_loss, out.path / out.PLOT)
    chosen = {"settings": asdict(settings), "objective": objective, "max_loss": own.max_loss,
              "match_content_on_cold_items": own.match_content_on_cold_items,
              "target": {key: float(grid.loc[chosen_row, key]) for key in shown},
              "target_ranker": {key: float(grid.loc[0, key]) for key in shown},
              "within_loss": bool(grid.loc[chosen_row, "within_loss"]),
              "choose_on": own.choose_on, "choice_users": len(target_users),
              "choice_window_days": own.choice_window_days}
    if (grid["setting"] == "content").any():
        chosen["target_content"] = {key: float(grid.loc[grid["setting"] == "content", key].iloc[0]) for key in shown}
        cold = f"{COLD_ITEMS}.{primary}"
        if cold in shown:  # whether the cold-item ask held (when none met it within the loss, it was dropped)
            chosen["cold_items_matched"] = chosen["target"][cold] >= chosen["target_content"][cold]
    write_json(out.path / out.CHOSEN, chosen)
    log.info("rerank: chose %s on %d target users: %s", _named(settings),
             len(target_users), ", ".join(f"{k} {chosen['target'][k]:.4f} (ranker {chosen['target_ranker'][k]:.4f})"
                                         for k in shown))

    # The final lists of every user, from the ranker's train-stage lists.
    lists, side, final_blocked = final_stage(config, ctx.inputs, prepared, blocked)
    users = lists.users
    served: dict[str, np.ndarray] = {}
    items = reranked(lists, side, settings, blocked=final_blocked, rejected=rejected, n_items=prepared.n_items,
                     served=served)
    valid = items >= 0
    write_parquet(pd.DataFrame({
        "user": np.repeat(users, items.shape[1])[valid.ravel()].astype(np.int32),
        "item": items[valid].astype(np.int32),
        "score": np.tile(-np.arange(items.shape[1], dtype=np.float32), len(users))[valid.ravel()],
        "rank": np.tile(np.arange(1, items.shape[1] + 1, dtype=np.int32), len(users))[valid.ravel()],
    }), out.path / out.RECOMMENDATIONS)
    release = prepared.item_release_seconds()
    np.savez(out.path / out.ITEM_SIDE, age_days=side.age_days, popularity=side.popularity,
             release=release if release is not None else np.zeros(0),
             embeddings=side.embeddings if side.embeddings is not None else np.zeros((0, 0)),
             attribute=side.attribute if side.attribute is not None else np.zeros(0, dtype=np.int64))
    content = lists.content_items >= 0
    write_parquet(pd.DataFrame({
        "user": np.repeat(users, content.shape[1])[content.ravel()].astype(np.int32),
        "item": lists.content_items[content].astype(np.int32),
        "score": lists.content_scores[content],
        # The content generator's own rank (among all its items): the order, and where
        # content_max_rank places the item.
        "rank": lists.content_ranks[content].astype(np.int32),
    }), out.path / out.CONTENT)
    write_json(out.path / out.SERVING, {"settings": asdict(settings), "blocked": blocked.tolist(),
                                        "rejected": rejected.tolist(), "capped": served["capped"].tolist(),
                                        "promoted": served["promoted"].tolist(),
                                        "n_items": prepared.n_items})

    # Test, once, at the chosen setting: paired against the ranker's lists.
    evaluator = Evaluator(prepared, "train", tuple(config.evaluation.ks))
    test_lists = {"ranker": lists.rows(evaluator.users).items,
                  "rerank": items[np.searchsorted(users, evaluator.users)]}
    results = {name: evaluator.evaluate(model) for name, model in test_lists.items()}
    values = pd.DataFrame({name: evaluator.per_user(model, primary) for name, model in test_lists.items()})
    comparison = metrics.paired_comparisons({"ranker": values["ranker"].to_numpy()}, values["rerank"].to_numpy(),
                                            metric=primary, n_resamples=config.evaluation.n_bootstrap,
                                            confidence=config.evaluation.confidence,
                                            random_state=config.experiment.seed)["ranker"]
    write_json(out.path / out.SIGNIFICANCE, {"primary_metric": primary, "vs_ranker": comparison.to_dict(),
                                             "test": results, "n_test_users": len(evaluator.users)})
    found = {f"test.{name}.{key}": value for name, scores in results.items() for key, value in scores.items()}
    found |= {f"target.{key}": value for key, value in chosen["target"].items()}
    # The numeric ones as metrics (the run's params hold every one, ``coverage_cost`` included).
    found |= {f"chosen.{key}": float(value) for key in GRID_KEYS
              if isinstance(value := getattr(settings, key), int | float)}
    found |= {"vs_ranker.rel_uplift": comparison.rel_uplift,
              "vs_ranker.rel_ci_low": comparison.rel_ci_low, "vs_ranker.rel_ci_high": comparison.rel_ci_high}
    write_json(out.path / out.METRICS, found)
    log.info("rerank on test: %s %.4f vs ranker %.4f (%+.1f%%, CI %+.1f%% .. %+.1f%%)", primary,
             comparison.mean_b, comparison.mean_a, 100 * comparison.rel_uplift, 100 * comparison.rel_ci_low,
             100 * comparison.rel_ci_high)
    return Result(metrics={k.replace("@", "_at_"): v for k, v in found.items()},
                  params={f"chosen.{k}": v for k, v in asdict(settings).items()},
                  artifacts=[out.RECOMMENDATIONS, out.GRID, out.PLOT, out.CHOSEN, out.SIGNIFICANCE, out.METRICS,
                             out.SERVING])


def _plot(grid: pd.DataFrame, primary: str, objective: str, max_loss: float, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if objective == primary and f"{COLD_ITEMS}.{primary}" in grid:  # accuracy: plot what it is bought with
        objective = f"{COLD_ITEMS}.{primary}"
    settings = grid[grid["setting"] == "rerank"]
    for penalty, rows in settings.groupby("popularity_penalty"):
        axes.plot(rows[objective], rows[primary], "o", label=f"popularity penalty {penalty:g}", alpha=0.8)
    axes.plot(grid.loc[0, objective], grid.loc[0, primary], "k*", markersize=12, label="ranker")
    chosen = grid[grid["chosen"]]
    axes.plot(chosen[objective], chosen[primary], "rs", markersize=12, fillstyle="none", label="chosen")
    axes.axhline((1 - max_loss) * grid.loc[0, primary], color="grey", linestyle="--", linewidth=1,
                 label=f"{100 * max_loss:g}% below the ranker")
    axes.set_xlabel(f"{objective} (ranker-target part)")
    axes.set_ylabel(primary)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    from encore.pipeline.cli import component_main  # the CLI is no part of what this component computes

    sys.exit(component_main(NAME, description=__doc__ or ""))
