"""The recommender contract, as one call a plug-in author can run on their own kind.

``check_recommender(MyRecommender)`` fits the class on a small seeded matrix (and the side data
it declares) and checks what the pipeline relies on, in the spirit of scikit-learn's
``check_estimator`` and RecTools' model tests:

* the declaration: a :class:`~encore.recommenders.base.Recommender` subclass whose
  ``config_class`` is a :class:`~encore.recommenders.generator_config.GeneratorConfig` and whose
  side data are known parts of a :class:`~encore.recommenders.generator_config.StageView`;
* **config defaults equal constructor defaults** (a kind's defaults are declared in its config
  class; the constructor repeats them and must not drift);
* ``fit`` returns self, sets ``n_users_`` / ``n_items_`` and leaves its input alone;
* ``score``, ``score_pairs``, ``recommend`` and ``similar_items`` have the shapes, dtypes and
  padding :mod:`encore.recommenders.base` documents, scores are never NaN or +inf, seen items
  are filtered when asked, an item is never its own neighbour;
* save -> load through ``.npz`` gives identical results, and no saved array is pickled;
* the same seed gives the same lists.

Each failure is an ``AssertionError`` whose message names the class and the check.
"""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

import numpy as np
import scipy.sparse as sp

from encore.recommenders.base import Recommender
from encore.recommenders.generator_config import GeneratorConfig, SideData, StageView

__all__ = ["CHECKS", "check_recommender", "sample_stage_view"]

CHECKS = (
    "declaration", "config defaults equal constructor defaults", "fit", "score", "score_pairs", "recommend",
    "similar_items", "save/load round trip", "same seed, same lists",
)
"""The checks, in the order they run (the names that appear in failure messages)."""


class _Failure(AssertionError):
    """A contract failure already named (class and check): passed through unchanged."""


@contextmanager
def _check(cls: type, name: str) -> Iterator[None]:
    """Name the class and the check in any failure raised inside, an exception included: a
    plug-in author sees which promise their class breaks, not a traceback from deep inside."""
    try:
        yield
    except _Failure:
        raise
    except AssertionError as exc:
        raise _Failure(f"{cls.__qualname__} fails '{name}': {exc}") from exc
    except Exception as exc:
        raise _Failure(f"{cls.__qualname__} fails '{name}': raised {type(exc).__name__}: {exc}") from exc


def sample_stage_view(side_data: tuple[str, ...] = (), *, n_users: int = 40, n_items: int = 60,
                      random_state: int = 0) -> StageView:
    """A small seeded stage: play counts ``(n_users, n_items)`` (every user 4-12 items, counts
    1-50) and, for each name in ``side_data``, that part of the view (item tags, symmetric friend
    links, last-play timestamps on the plays' pattern)."""
    rng = np.random.default_rng(random_state)
    rows, cols = [], []
    for user in range(n_users):
        items = rng.choice(n_items, size=int(rng.integers(4, 13)), replace=False)
        rows.append(np.full(len(items), user))
        cols.append(items)
    row, col = np.concatenate(rows), np.concatenate(cols)
    plays = rng.integers(1, 51, size=len(row)).astype(np.float32)
    user_items = sp.csr_matrix((plays, (row, col)), shape=(n_users, n_items), dtype=np.float32)
    parts: dict[str, sp.csr_matrix] = {}
    if "item_features" in side_data:
        parts["item_features"] = sp.random(n_items, 15, density=0.3, format="csr", dtype=np.float32,
                                           random_state=rng, data_rvs=lambda n: rng.integers(1, 6, n))
    if "social" in side_data:
        links = sp.random(n_users, n_users, density=0.1, format="csr", random_state=rng)
        links = ((links + links.T) > 0).astype(np.float32)
        links.setdiag(0)
        links.eliminate_zeros()
        parts["social"] = sp.csr_matrix(links)
    if "timestamps" in side_data:
        stamps = user_items.copy()
        stamps.data = (1.2e9 + rng.integers(0, 3.0e7, size=stamps.nnz)).astype(np.float64)
        parts["timestamps"] = stamps
    return StageView(user_items=user_items, **parts)


def check_recommender(
    cls: type[Recommender],
    *,
    user_items: sp.csr_matrix | None = None,
    side_data: Mapping[str, sp.csr_matrix | None] | None = None,
    params: Mapping[str, Any] | None = None,
    random_state: int = 0,
    N: int = 10,
) -> None:
    """Check that ``cls`` keeps the recommender contract; raise ``AssertionError`` naming the
    class and the broken check otherwise.

    Parameters
    ----------
    cls:
        The kind to check (a :class:`~encore.recommenders.base.Recommender` subclass).
    user_items:
        ``(n_users, n_items)`` float32 play counts to fit on; default: :func:`sample_stage_view`.
    side_data:
        Parts of the :class:`~encore.recommenders.generator_config.StageView` beside
        ``user_items`` (``item_features``, ``social``, ``timestamps``); default: sample data for
        every part ``cls.side_data`` declares (made to fit ``user_items``' shape).
    params:
        Hyper-parameters to fit with instead of the config's defaults (e.g. fewer iterations).
    random_state:
        Seed of the sample data and of the model (``random_state`` when the constructor takes one).
    N:
        List length of ``recommend`` and ``similar_items``.
    """
    with _check(cls, "declaration"):
        _check_declaration(cls)
    with _check(cls, "config defaults equal constructor defaults"):
        _check_defaults(cls)

    declared = tuple(cls.side_data)
    if user_items is None:
        sample = sample_stage_view(declared, random_state=random_state)
    else:
        user_items = sp.csr_matrix(user_items, dtype=np.float32)
        n_users, n_items = user_items.shape
        sample = sample_stage_view(declared, n_users=n_users, n_items=n_items, random_state=random_state)
        sample = StageView(user_items, sample.item_features, sample.social, sample.timestamps)
    view = StageView(sample.user_items, **{**{name: getattr(sample, name) for name in get_args(SideData)},
                                          **dict(side_data or {})})
    X = view.user_items
    n_users, n_items = X.shape
    config = cls.config_class.model_validate({"kind": cls.name, **dict(params or {})})

    def fitted() -> Recommender:
        return cls.from_config(config, seed=random_state).fit_stage(view)

    with _check(cls, "fit"):
        before = X.copy()
        model = cls.from_config(config, seed=random_state)
        returned = model.fit_stage(view)
        assert returned is model, f"fit returned {type(returned).__name__}, not self"
        assert (model.n_users_, model.n_items_) == (n_users, n_items), (
            f"n_users_, n_items_ = {(model.n_users_, model.n_items_)}, expected {(n_users, n_items)}")
        assert _same_csr(X, before), "fit changed the user_items it was given"

    users = np.arange(n_users, dtype=np.int64)
    with _check(cls, "score"):
        scores = model.score(users, X)
        _expect_array(scores, (n_users, n_items), np.float32, "score")
        assert not np.isnan(scores).any(), "score has NaN"
        assert not np.isposinf(scores).any(), "score has +inf"

    with _check(cls, "score_pairs"):
        pair_users = np.repeat(users, 3)
        pair_items = np.random.default_rng(random_state).integers(0, n_items, len(pair_users))
        pairs = model.score_pairs(pair_users, pair_items, X)
        _expect_array(pairs, (len(pair_users),), np.float32, "score_pairs")
        np.testing.assert_allclose(pairs, scores[pair_users, pair_items], rtol=1e-4, atol=1e-5,
                                   err_msg="score_pairs differs from score at the same pairs")

    with _check(cls, "recommend"):
        ids, top = model.recommend(users, X, N, filter_already_liked_items=True)
        _expect_lists(ids, top, (n_users, N), n_items, "recommend")
        seen = np.asarray(X[np.repeat(users, N), np.where(ids >= 0, ids, 0).ravel()]).reshape(ids.shape) != 0
        assert not (seen & (ids >= 0)).any(), "recommend with filter_already_liked_items returned a seen item"
        real = ids >= 0
        np.testing.assert_allclose(top[real], scores[np.nonzero(real)[0], ids[real]], rtol=1e-4, atol=1e-5,
                                   err_msg="recommend's scores differ from score's")
        subset = users[::-3]  # rows are selected by id: any subset, any order, gives the same lists
        sub_ids, sub_top = model.recommend(subset, X, N, filter_already_liked_items=True, batch_size=2)
        np.testing.assert_array_equal(sub_ids, ids[subset], err_msg="recommend for a subset of users (in "
                                      "batches of 2) differs from the same users' rows of the whole call")
        np.testing.assert_allclose(sub_top, top[subset], rtol=1e-5, atol=1e-6)

    items = np.arange(n_items, dtype=np.int64)
    with _check(cls, "similar_items"):
        similar, similar_scores = model.similar_items(items, N)
        _expect_lists(similar, similar_scores, (n_items, N), n_items, "similar_items")
        assert not (similar == items[:, None]).any(), "similar_items lists an item as its own neighbour"

    with _check(cls, "save/load round trip"):
        state = model._get_state()
        assert isinstance(state, dict), f"_get_state returned {type(state).__name__}, not a dict of arrays"
        for key, value in state.items():
            assert isinstance(value, np.ndarray), f"state '{key}' is a {type(value).__name__}, not a numpy array"
            assert value.dtype != object, f"state '{key}' is an object array: it would be pickled"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.npz"
            model.save(path)
            with np.load(path, allow_pickle=False) as data:  # raises on any pickled member
                for key in data.files:
                    data[key]
            loaded = cls.load(path)
        assert type(loaded) is cls, f"load gave a {type(loaded).__name__}"
        _expect_same(model, loaded, users, X, N, "the loaded model")

    with _check(cls, "same seed, same lists"):
        _expect_same(model, fitted(), users, X, N, "a second fit with the same seed")


# --------------------------------------------------------------------------------------- checks
def _check_declaration(cls: type) -> None:
    assert isinstance(cls, type) and issubclass(cls, Recommender), (
        "not a subclass of encore.recommenders.base.Recommender")
    assert not inspect.isabstract(cls), "abstract: implement " + ", ".join(sorted(cls.__abstractmethods__))
    config_class = cls.config_class
    assert isinstance(config_class, type) and issubclass(config_class, GeneratorConfig), (
        "config_class must be a subclass of encore.recommenders.generator_config.GeneratorConfig")
    known = get_args(SideData)
    for attribute in ("side_data", "required_side_data"):
        unknown = [name for name in getattr(cls, attribute) if name not in known]
        assert not unknown, f"{attribute} names {unknown}; known: {', '.join(known)}"
    extra = set(cls.required_side_data) - set(cls.side_data)
    assert not extra, f"required_side_data {sorted(extra)} is not in side_data (fit would never get it)"


def _check_defaults(cls: type[Recommender]) -> None:
    """Every hyper-parameter of the config class is a constructor argument with the same
    default; a constructor argument the config does not set needs a default of its own."""
    config_class = cls.config_class
    parameters = {name: p for name, p in inspect.signature(cls).parameters.items()
                  if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    kind = config_class.model_fields["kind"]
    if not kind.is_required():
        assert kind.default == cls.name, (
            f"{config_class.__name__}.kind defaults to {kind.default!r}, the class is named {cls.name!r}")
    for name, field in config_class.model_fields.items():
        if name in config_class.setting_fields():
            continue
        assert name in parameters, (
            f"{config_class.__name__}.{name} is not an argument of {cls.__name__}.__init__ (from_config passes it)")
        default = parameters[name].default
        if field.is_required():
            continue
        config_default = field.get_default(call_default_factory=True)
        assert default is not inspect.Parameter.empty and _equal(default, config_default), (
            f"{name}: {config_class.__name__} says {config_default!r}, {cls.__name__}.__init__ says "
            f"{'no default' if default is inspect.Parameter.empty else repr(default)}")
    for name, parameter in parameters.items():
        if name not in config_class.model_fields:
            assert parameter.default is not inspect.Parameter.empty, (
                f"{cls.__name__}.__init__ argument '{name}' is not in {config_class.__name__} and has no default")


def _equal(a: Any, b: Any) -> bool:
    """Same value; an int and a float of equal value count as equal (``3000`` vs ``3000.0``), a
    bool and a number do not (``True`` is not ``1`` as a setting)."""
    if isinstance(a, bool) or isinstance(b, bool) or not (isinstance(a, int | float) and isinstance(b, int | float)):
        return type(a) is type(b) and a == b
    return a == b


def _expect_array(array: Any, shape: tuple[int, ...], dtype: type, what: str) -> None:
    assert isinstance(array, np.ndarray), f"{what} returned a {type(array).__name__}, not a numpy array"
    assert array.shape == shape, f"{what} has shape {array.shape}, expected {shape}"
    assert array.dtype == dtype, f"{what} has dtype {array.dtype}, expected {np.dtype(dtype)}"


def _expect_lists(ids: np.ndarray, scores: np.ndarray, shape: tuple[int, int], n_items: int, what: str) -> None:
    """Top-N lists as base.py documents them: int64 ids (-1 padded), float32 scores (-inf
    padded, exactly where the ids are), best first, no item twice in a row."""
    _expect_array(ids, shape, np.int64, f"{what} ids")
    _expect_array(scores, shape, np.float32, f"{what} scores")
    assert ((ids >= -1) & (ids < n_items)).all(), f"{what} returned ids outside -1 .. {n_items - 1}"
    pad = ids == -1
    assert (pad == np.isneginf(scores)).all(), f"{what}: padding must be id -1 with score -inf, and only there"
    assert not np.isnan(scores).any(), f"{what} returned NaN scores"
    assert (scores[:, 1:] <= scores[:, :-1]).all(), f"{what} lists are not best first"
    assert (np.diff(pad.astype(np.int8), axis=1) >= 0).all(), f"{what}: padding must come after the items"
    ordered = np.sort(np.where(pad, -1 - np.arange(shape[1]), ids), axis=1)
    assert not (np.diff(ordered, axis=1) == 0).any(), f"{what} lists an item twice in one row"


def _expect_same(model: Recommender, other: Recommender, users: np.ndarray, X: sp.csr_matrix, N: int,
                 what: str) -> None:
    calls: dict[str, Callable[[Recommender], Any]] = {
        "recommend": lambda m: m.recommend(users, X, N),
        "similar_items": lambda m: m.similar_items(np.arange(m.n_items_), N),
        "score": lambda m: (m.score(users, X),),
    }
    assert other.get_params() == model.get_params(), f"{what} has params {other.get_params()}"
    for name, call in calls.items():
        for mine, theirs in zip(call(model), call(other), strict=True):
            np.testing.assert_array_equal(theirs, mine, err_msg=f"{what} gives a different {name}")


def _same_csr(a: sp.csr_matrix, b: sp.csr_matrix) -> bool:
    return (a.shape == b.shape and np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
            and np.array_equal(a.data, b.data))
