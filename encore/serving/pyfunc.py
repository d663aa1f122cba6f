"""The serving model: an MLflow pyfunc over precomputed Parquet recommendation tables.

The ranker runs offline; what gets served is a *bundle*, a folder of Parquet files:

``recommendations.parquet``
    ``user_id`` (str, raw id), ``item_id`` (str, raw id), ``rank`` (int, 1 = best),
    ``score`` (float; nan: a completion from popular items, which the ranker did not score): the
    ranker's top-k for every known user.
``popular.parquet``
    ``item_id``, ``score``, most popular first: the fallback for unknown users and the
    filler for users with fewer than k offline items.
``similar_items.parquet``
    ``item_id``, ``similar_item_id``, ``score``, ``rank``: "because you just played X".
``items.parquet``
    ``item_id``, ``name``: display names, joined onto every answer (``name`` beside the item).
``heard.parquet`` (optional; bundles before it lack it)
    ``user_id``, ``item_id``: what each known user listened to in training. The ranker's lists
    never hold these; neither does the popular fill of a list longer than them.
``rerank.json``, ``rerank_items.npz``, ``rerank_content.parquet``, ``rerank_rejections.parquet`` (optional)
    what the ``rerank`` component chose and re-ranks with; the service applies it
    (:mod:`encore.serving.rerank`), ``predict`` serves the ranker's lists as before.
``foldin.npz`` (optional: when the ranker uses a ``twotower`` instance)
    ``item_id`` (str) and that model's fold-in arrays (``item_factors``, the user tower's history
    weights): the service places a listener the model never saw from their listens
    (:mod:`encore.serving.foldin`); ``predict`` does not use it.

Queries (a pandas DataFrame):

* column ``user_id`` (and optional ``k``, default 10, per row) -> columns
  ``user_id, rank, item_id, name, score, source`` with ``source`` "ranker" or "popular";
* column ``item_id`` instead (and optional ``k``) -> columns
  ``item_id, rank, similar_item_id, name, score, source`` with ``source`` "similar" or "popular"
  (``name`` is the recommended item's display name, empty when the data has none).

Logged with MLflow *models-from-code*: this file itself is the model code
(``python_model=<this file>``) and ends with ``mlflow.models.set_model(...)``. When loaded,
MLflow executes the file as a fresh module, so the model part imports only pandas, numpy
and mlflow: a consumer needs neither this repository nor cloud credentials.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

BUNDLE_FILES = ("recommendations.parquet", "popular.parquet", "similar_items.parquet", "items.parquet")
HEARD_FILE = "heard.parquet"
RERANK_CONFIG, RERANK_ITEMS = "rerank.json", "rerank_items.npz"
RERANK_CONTENT, RERANK_REJECTIONS = "rerank_content.parquet", "rerank_rejections.parquet"
"""The re-ranking files (optional): what ``encore.serving.rerank`` re-ranks served lists with."""
FOLDIN_FILE = "foldin.npz"
"""A two-tower model's fold-in arrays (optional): what ``encore.serving.foldin`` places new listeners with."""
BUNDLE_ARTIFACT = "bundle"
DEFAULT_K = 10
USER_COLUMNS = ["user_id", "rank", "item_id", "name", "score", "source"]
ITEM_COLUMNS = ["item_id", "rank", "similar_item_id", "name", "score", "source"]


def _as_str(series: pd.Series) -> pd.Series:
    # Why: raw ids may arrive as ints (Last.fm ids are numeric); the tables key on strings.
    return series.astype(str)


def _requests(model_input: pd.DataFrame, key: str, default_k: int) -> pd.DataFrame:
    """One row per distinct id with its k (first occurrence wins), input order kept."""
    req = pd.DataFrame({key: _as_str(model_input[key])})
    if "k" in model_input.columns:
        k = pd.to_numeric(model_input["k"], errors="coerce").fillna(default_k)
    else:
        k = pd.Series(default_k, index=model_input.index)
    req["k"] = k.astype("int64").to_numpy()
    if (req["k"] < 1).any():
        raise ValueError("k must be >= 1")
    req = req.drop_duplicates(key, keep="first").reset_index(drop=True)
    req["_order"] = np.arange(len(req))
    return req


def _fill_from_popular(
    req: pd.DataFrame, have: pd.DataFrame, popular: pd.DataFrame, key: str, out_item: str,
    heard: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Popular items for each request, skipping what it already has, what its user heard in
    training (``heard``, same columns) and the query item itself, up to its k.

    ``have`` holds the rows already chosen (columns ``key``, ``out_item``). Vectorised: a
    bounded cross join with the head of the popularity list, an anti-join, a per-key cutoff.
    """
    counts = have.groupby(key, sort=False).size()
    need = req.assign(_have=req[key].map(counts).fillna(0).astype("int64"))
    need["_need"] = need["k"] - need["_have"]
    need = need[need["_need"] > 0]
    if need.empty or popular.empty:
        return pd.DataFrame(columns=[key, out_item, "score", "_order", "_pos"])
    if heard is not None and not heard.empty:
        heard = heard[heard[key].isin(need[key])]
        have = pd.concat([have[[key, out_item]], heard[[key, out_item]]], ignore_index=True)
        counts = have.groupby(key, sort=False).size()
    # Why this bound: excluded items (already chosen, heard, or the query item) are at most
    # their count (+1), so the first k + that + 1 popular items always contain enough.
    depth = int((need["k"] + need[key].map(counts).fillna(0).astype("int64") + 1).max())
    head = popular.head(depth).rename(columns={"item_id": out_item})
    cand = need[[key, "_need", "_order"]].merge(head, how="cross")
    exclude = have[[key, out_item]].drop_duplicates().assign(_seen=True)
    cand = cand.merge(exclude, on=[key, out_item], how="left")
    keep = cand["_seen"].isna()
    if key == "item_id":  # never recommend the item the user just played
        keep = keep & (cand[key] != cand[out_item])
    cand = cand[keep]
    cand = cand.sort_values(["_order", "_pop_rank"], kind="stable")
    cand["_pos"] = cand.groupby(key, sort=False).cumcount()
    cand = cand[cand["_pos"] < cand["_need"]]
    return cand[[key, out_item, "score", "_order", "_pos"]]


class EncoreServingModel(PythonModel):
    """Top-k recommendations from precomputed tables, with a popularity fallback."""

    def __init__(self, default_k: int = DEFAULT_K) -> None:
        self.default_k = default_k
        self.recommendations = pd.DataFrame(columns=["user_id", "item_id", "rank", "score"])
        self.popular = pd.DataFrame(columns=["item_id", "score", "_pop_rank"])
        self.similar = pd.DataFrame(columns=["item_id", "similar_item_id", "score", "rank"])
        self.items = pd.DataFrame(columns=["item_id", "name"])
        self._names: tuple[pd.DataFrame, pd.Series] | None = None
        self.heard = pd.DataFrame({"user_id": pd.Series(dtype=str), "item_id": pd.Series(dtype=str)})
        self.rerank: dict[str, Any] | None = None
        self.foldin: dict[str, np.ndarray] | None = None

    # -- loading ---------------------------------------------------------------------------

    def load_context(self, context: Any) -> None:
        """Read the bundle folder logged as the ``bundle`` artifact."""
        self.load_bundle(Path(context.artifacts[BUNDLE_ARTIFACT]))
        config = getattr(context, "model_config", None) or {}
        self.default_k = int(config.get("k", self.default_k))

    def load_bundle(self, bundle_dir: Path) -> EncoreServingModel:
        """Load the Parquet tables (also usable without MLflow, e.g. in tests)."""
        bundle_dir = Path(bundle_dir)
        missing = [name for name in BUNDLE_FILES if not (bundle_dir / name).is_file()]
        if missing:
            raise FileNotFoundError(f"serving bundle {bundle_dir} lacks {', '.join(missing)}")
        recs = pd.read_parquet(bundle_dir / "recommendations.parquet")
        recs = recs.assign(user_id=_as_str(recs["user_id"]), item_id=_as_str(recs["item_id"]))
        self.recommendations = recs.sort_values(["user_id", "rank"], kind="stable").reset_index(drop=True)
        pop = pd.read_parquet(bundle_dir / "popular.parquet")
        # File order is the popularity order (most popular first).
        self.popular = pd.DataFrame(
            {
                "item_id": _as_str(pop["item_id"]),
                "score": pop["score"].astype("float64"),
                "_pop_rank": np.arange(len(pop)),
            }
        ).drop_duplicates("item_id", keep="first")
        sim = pd.read_parquet(bundle_dir / "similar_items.parquet")
        self.similar = sim.assign(
            item_id=_as_str(sim["item_id"]), similar_item_id=_as_str(sim["similar_item_id"])
        ).sort_values(["item_id", "rank"], kind="stable")
        items = pd.read_parquet(bundle_dir / "items.parquet")
        self.items = items.assign(item_id=_as_str(items["item_id"]))
        if (bundle_dir / HEARD_FILE).is_file():
            heard = pd.read_parquet(bundle_dir / HEARD_FILE)
            self.heard = pd.DataFrame({"user_id": _as_str(heard["user_id"]), "item_id": _as_str(heard["item_id"])})
        self.rerank = _read_rerank(bundle_dir)  # the rerank component's setting, when it ran
        self.foldin = _read_foldin(bundle_dir)  # a twotower ranker input's fold-in arrays, when there is one
        return self

    @property
    def names(self) -> pd.Series:
        """Display name by item id (from ``items``; built once per ``items`` table). Joined only
        onto the rows an answer returns: a lookup, not a merge of the tables."""
        if self._names is None or self._names[0] is not self.items:
            items = self.items.drop_duplicates("item_id")
            names = pd.Series(items["name"].fillna("").astype(str).to_numpy(),
                              index=_as_str(items["item_id"]).to_numpy())
            self._names = (self.items, names)
        return self._names[1]

    # -- prediction ------------------------------------------------------------------------

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Recommendations for ``user_id`` rows, or similar items for ``item_id`` rows."""
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        has_user = "user_id" in model_input.columns and model_input["user_id"].notna().any()
        has_item = "item_id" in model_input.columns and model_input["item_id"].notna().any()
        if has_user:
            return self.recommend(model_input)
        if has_item:
            return self.similar_items(model_input)
        if "user_id" in model_input.columns or model_input.empty:
            return pd.DataFrame({c: pd.Series(dtype=_DTYPES[c]) for c in USER_COLUMNS})
        raise ValueError("model input needs a 'user_id' column (recommendations) or an 'item_id' column")

    def recommend(self, model_input: pd.DataFrame) -> pd.DataFrame:
        """Top-k per user: the ranker's list, filled (never duplicated) from popularity."""
        req = _requests(model_input[model_input["user_id"].notna()], "user_id", self.default_k)
        ranked = req.merge(self.recommendations, on="user_id", how="inner")
        ranked = ranked.sort_values(["_order", "rank"], kind="stable")
        ranked["_pos"] = ranked.groupby("user_id", sort=False).cumcount()
        ranked = ranked[ranked["_pos"] < ranked["k"]].assign(source="ranker")
        filler = _fill_from_popular(req, ranked, self.popular, "user_id", "item_id",
                                    heard=self.heard).assign(source="popular")
        return self._finish(ranked, filler, "user_id", "item_id", USER_COLUMNS)

    def similar_items(self, model_input: pd.DataFrame) -> pd.DataFrame:
        """Top-k similar items per query item, filled from popularity (never the item itself)."""
        req = _requests(model_input[model_input["item_id"].notna()], "item_id", self.default_k)
        ranked = req.merge(self.similar, on="item_id", how="inner")
        ranked = ranked[ranked["similar_item_id"] != ranked["item_id"]]
        ranked = ranked.sort_values(["_order", "rank"], kind="stable")
        ranked["_pos"] = ranked.groupby("item_id", sort=False).cumcount()
        ranked = ranked[ranked["_pos"] < ranked["k"]].assign(source="similar")
        filler = _fill_from_popular(req, ranked, self.popular, "item_id", "similar_item_id").assign(source="popular")
        return self._finish(ranked, filler, "item_id", "similar_item_id", ITEM_COLUMNS)

    def _finish(
        self, ranked: pd.DataFrame, filler: pd.DataFrame, key: str, out_item: str, columns: list[str]
    ) -> pd.DataFrame:
        cols = [key, out_item, "score", "source", "_order", "_pos"]
        parts = [frame[cols].assign(_part=i) for i, frame in enumerate((ranked, filler)) if not frame.empty]
        out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*cols, "_part"])
        out = out.sort_values(["_order", "_part", "_pos"], kind="stable")
        out["rank"] = out.groupby(key, sort=False).cumcount() + 1
        out["name"] = out[out_item].map(self.names).fillna("")
        out = out[columns].reset_index(drop=True).fillna({"score": 0.0})  # 0: what the ranker did not score
        return out.astype({c: _DTYPES[c] for c in columns})


_DTYPES = {
    "user_id": "str",
    "item_id": "str",
    "similar_item_id": "str",
    "rank": "int64",
    "score": "float64",
    "source": "str",
    "name": "str",
}


# ------------------------------------------------------------------------------- logging


def _read_rerank(bundle_dir: Path) -> dict[str, Any] | None:
    """The bundle's re-ranking files, or None (re-ranking off, or a bundle from before it)."""
    import json

    if not (bundle_dir / RERANK_CONFIG).is_file():
        return None
    with np.load(bundle_dir / RERANK_ITEMS) as arrays:
        items = {name: arrays[name] for name in arrays.files}
    return {"config": json.loads((bundle_dir / RERANK_CONFIG).read_text()), "items": items,
            "content": pd.read_parquet(bundle_dir / RERANK_CONTENT),
            "rejections": pd.read_parquet(bundle_dir / RERANK_REJECTIONS)}


def _read_foldin(bundle_dir: Path) -> dict[str, np.ndarray] | None:
    """The bundle's fold-in arrays by name (``item_id`` as str), or None (no twotower in the ranker)."""
    if not (bundle_dir / FOLDIN_FILE).is_file():
        return None
    with np.load(bundle_dir / FOLDIN_FILE, allow_pickle=False) as arrays:
        return {name: arrays[name] for name in arrays.files}


def write_foldin(bundle_dir: Path, *, item_ids: np.ndarray, state: dict[str, np.ndarray], source: str) -> None:
    """Write ``foldin.npz``: ``item_ids`` (raw, in the model's item order), the model's fold-in
    ``state`` (``TwoTowerRecommender.fold_in_state``) and ``source``, the instance it came from."""
    np.savez(Path(bundle_dir) / FOLDIN_FILE, item_id=np.asarray(item_ids).astype(str), source=np.asarray(source),
             **state)


def write_bundle(
    bundle_dir: Path,
    *,
    recommendations: pd.DataFrame,
    popular: pd.DataFrame,
    similar_items: pd.DataFrame,
    items: pd.DataFrame,
    heard: pd.DataFrame | None = None,
) -> Path:
    """Write the tables of a serving bundle (ids as strings) and return the folder; ``heard``
    (``user_id``, ``item_id``: the training listens) keeps them out of the served lists."""
    bundle_dir = Path(bundle_dir)
    bundle_dir.mkdir(parents=True, exist_ok=True)
    tables = {
        "recommendations.parquet": recommendations.astype({"user_id": str, "item_id": str}),
        "popular.parquet": popular.astype({"item_id": str}),
        "similar_items.parquet": similar_items.astype({"item_id": str, "similar_item_id": str}),
        "items.parquet": items.astype({"item_id": str}),
    }
    if heard is not None:
        tables[HEARD_FILE] = heard[["user_id", "item_id"]].astype({"user_id": str, "item_id": str})
    for name, frame in tables.items():
        frame.reset_index(drop=True).to_parquet(bundle_dir / name, index=False)
    return bundle_dir


def serving_signature() -> Any:
    """Input schema: ``user_id`` or ``item_id`` (strings, each optional) and optional ``k``."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema(
        [
            ColSpec("string", "user_id", required=False),
            ColSpec("string", "item_id", required=False),
            ColSpec("long", "k", required=False),
        ]
    )
    outputs = Schema(
        [
            ColSpec("string", "user_id"),
            ColSpec("long", "rank"),
            ColSpec("string", "item_id"),
            ColSpec("string", "name"),
            ColSpec("double", "score"),
            ColSpec("string", "source"),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def log_serving_model(
    bundle_dir: Path,
    *,
    registered_model_name: str | None = None,
    k: int = DEFAULT_K,
    name: str = "model",
) -> ModelInfo:
    """Log the bundle as a models-from-code pyfunc in the active run (or a new one).

    ``k`` becomes the default list length (``model_config``); the input example is the
    first known user, so the logged example returns real ranker rows.
    """
    import mlflow
    import pyarrow

    bundle_dir = Path(bundle_dir)
    model = EncoreServingModel(default_k=k).load_bundle(bundle_dir)  # fail early on a bad bundle
    users = model.recommendations["user_id"]
    example_user = str(users.iloc[0]) if len(users) else "unknown-user"
    input_example = pd.DataFrame({"user_id": [example_user], "k": [int(k)]})
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(Path(__file__).resolve()),
        artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
        model_config={"k": int(k)},
        signature=serving_signature(),
        input_example=input_example,
        registered_model_name=registered_model_name,
        # Only what the model code imports: loading must not drag in the training stack.
        pip_requirements=[
            f"mlflow=={mlflow.__version__}",
            f"pandas=={pd.__version__}",
            f"numpy=={np.__version__}",
            f"pyarrow=={pyarrow.__version__}",
        ],
    )


# Models-from-code: when MLflow executes this file to load (or validate) the model it
# runs it as a fresh module, and set_model() hands it the model instance. An ordinary
# `import encore.serving.pyfunc` skips this so importing has no global side effect.
if __name__ != "encore.serving.pyfunc":
    set_model(EncoreServingModel())
