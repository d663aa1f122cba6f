"""Settings of approximate retrieval (``components.<instance>.ann``)."""

from __future__ import annotations

from typing import Literal

from encore.config.types import NonNegativeInt, PositiveInt, Strict, UnitInterval

Retrieval = Literal["exact", "ann"]
"""``exact``: score every item (the model's own top-N); ``ann``: search an index over item vectors."""


class AnnConfig(Strict):
    """The index behind ``retrieval: ann``. Defaults measured in benchmarks/results/ann.json
    (recall@100 against exact on ALS, BPR and item2item vectors of the 10M synthetic catalogue,
    100k items).

    ``index``: ``pq`` (the default: every item scanned in a 4-bit product-quantised copy,
    faiss's SIMD "fast scan", then the ``refine_factor * k`` best re-scored exactly), ``hnsw``
    (faiss HNSW graph), ``ivf`` (faiss IVF-Flat: ``nlist`` k-means cells of which ``nprobe``
    are scanned) or ``flat`` (exact search through the same code path: the ground truth of the
    others). The approximate indexes search the inner product itself, or with
    ``norm_augmentation`` (``hnsw``, ``ivf``, ``flat``) the L2 distance of norm-augmented
    vectors, which ranks items the same way (``flat`` with it is exact: the transform's test).
    Why ``pq``: a graph on the inner product leaves items of small norm hard to reach (its
    recall@100 stalls below the bar however wide the search), on the augmented vectors worse;
    the quantised scan has no reachability to lose (docs/retrieval.md).
    """

    index: Literal["pq", "hnsw", "ivf", "flat"] = "pq"
    pq_dims: PositiveInt = 1
    """``pq``: vector dimensions per 4-bit code (fewer: a finer copy, more to scan)."""
    refine_factor: PositiveInt = 4
    """``pq``: candidates re-scored exactly per item asked for."""
    exact_share: UnitInterval = 0.03
    """``pq``: share of the items, those of largest norm, scored exactly on every search
    instead of quantised (the quantiser's k-means would clip them: see encore/retrieval/index.py)."""
    hnsw_m: PositiveInt = 32
    """Links per node of the HNSW graph."""
    ef_construction: PositiveInt = 256
    """Candidate list while the graph is built (higher: better graph, slower build)."""
    ef_search: PositiveInt = 512
    """Candidate list per query (at least the number of items asked for)."""
    nlist: NonNegativeInt = 0
    """IVF cells; 0 = ``4 * sqrt(n_items)``."""
    nprobe: PositiveInt = 32
    """IVF cells scanned per query."""
    norm_augmentation: bool = False
    """Search ``[x, sqrt(M^2 - |x|^2)]`` under L2 instead of the inner product (see the class)."""
    max_fetch: PositiveInt = 2048
    """Most items one query fetches (N plus the items the user heard, which are filtered out
    after the search); a user with a longer history is scored exactly."""
    recall_users: NonNegativeInt = 1000
    """Users of the seeded sample on which the generator measures recall against exact (0: none)."""

    def describe(self) -> str:
        """The settings that matter for this index, one line (logged with the recall)."""
        space = " norm-augmented L2" if self.norm_augmentation else " inner product"
        if self.index == "pq":
            return (f"pq {self.pq_dims} dims/4-bit code, refine x{self.refine_factor}, "
                    f"{self.exact_share:.0%} largest exact, inner product")
        if self.index == "hnsw":
            return f"hnsw M={self.hnsw_m} efConstruction={self.ef_construction} efSearch={self.ef_search}{space}"
        if self.index == "ivf":
            return f"ivf nlist={self.nlist or 'auto'} nprobe={self.nprobe}{space}"
        return "flat (exact)" + (", norm-augmented L2" if self.norm_augmentation else "")
