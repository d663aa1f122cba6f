"""prepare: load, validate and split the dataset, and write it in the prepared layout.

Output layout: see :mod:`encore.data.prepared`. Side data keyed by (user, item) is split
with the interactions here, once, so no later component can leak a held-out pair.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pandas as pd
import scipy.sparse as sp

from encore.config.experiment import EncoreConfig
from encore.data import MusicDataset, dataset_files, load_dataset
from encore.data.dataset import DataError
from encore.data.prepared import to_csr
from encore.evaluation.splits import Split, split_interactions, split_pair_side_data
from encore.io import write_json, write_parquet
from encore.lineage import file_digests
from encore.pipeline.component import Context, Result
from encore.pipeline.reuse_keys import input_digests

NAME = "prepare"
DEPENDS_ON: tuple[str, ...] = ()
CONFIG_SECTIONS = ("dataset", "split")
"""The config sections its output depends on (beside the seed): reuse is keyed on them."""

log = logging.getLogger(__name__)


def input_files(config: EncoreConfig) -> dict[str, Path]:
    """The data files this component reads: reuse is keyed on their content (SHA-256)."""
    return dataset_files(config.dataset, data_dir=config.data_dir)


def prepare(dataset: MusicDataset, split: Split, out: Path, *, data_sha256: dict[str, str]) -> dict:
    """Write ``dataset`` split as ``split`` into ``out``; return the summary."""
    shape = (dataset.n_users, dataset.n_items)
    write_parquet(pd.DataFrame({"user": range(dataset.n_users), "raw_id": dataset.user_ids.astype(str)}),
                  out / "users.parquet")
    names = dataset.item_names if dataset.item_names is not None else dataset.item_ids
    items = pd.DataFrame({"item": range(dataset.n_items), "raw_id": dataset.item_ids.astype(str),
                          "name": pd.Series(names).astype(str)})
    if dataset.item_release is not None:
        items["release"] = dataset.item_release
    write_parquet(items, out / "items.parquet")
    if dataset.tag_names is not None:
        write_parquet(pd.DataFrame({"tag": range(dataset.n_tags), "name": dataset.tag_names.astype(str)}),
                      out / "tags.parquet")
    for part in ("base", "target", "test"):
        write_parquet(getattr(split, part), out / f"{part}.parquet")
    sp.save_npz(out / "base.npz", to_csr(split.base, shape))
    sp.save_npz(out / "train.npz", to_csr(split.train, shape))

    summary = {
        "dataset": dataset.name,
        "n_users": dataset.n_users,
        "n_items": dataset.n_items,
        "n_tags": dataset.n_tags,
        "n_interactions": len(dataset.interactions),
        "has_timestamps": dataset.has_timestamps,
        "loader_stats": dataset.stats,
        "data_sha256": data_sha256,
        **split.summary(),
    }
    if dataset.item_tags is not None:
        write_parquet(dataset.item_tags, out / "item_tags.parquet")
    if dataset.user_item_tags is not None:
        tags_base, tags_train = split_pair_side_data(dataset.user_item_tags, split, dataset.n_items)
        write_parquet(tags_base, out / "user_item_tags_base.parquet")
        write_parquet(tags_train, out / "user_item_tags_train.parquet")
        summary["user_item_tags_rows"] = len(dataset.user_item_tags)
        summary["user_item_tags_removed_for_test"] = len(dataset.user_item_tags) - len(tags_train)
        summary["user_item_tags_removed_for_base"] = len(dataset.user_item_tags) - len(tags_base)
    if dataset.social is not None:
        write_parquet(dataset.social, out / "social.parquet")
        summary["social_links"] = len(dataset.social)
    write_json(out / "summary.json", summary)
    return summary


def run(config: EncoreConfig, ctx: Context) -> Result:
    declared = input_digests(config, NAME)
    dataset = load_dataset(config.dataset, data_dir=config.data_dir)
    data_sha256 = file_digests(dataset.files)
    changed = sorted(role for role, digest in declared.items() if data_sha256.get(role, digest) != digest)
    if changed:  # the output would be keyed on content it does not hold
        raise DataError(str(dataset.files[changed[0]]), "changed while it was being read; run again")
    split = split_interactions(dataset.interactions, config.split, seed=config.experiment.seed)
    summary = prepare(dataset, split, ctx.output, data_sha256=data_sha256)
    log.info(
        "prepared %s: %d users, %d items, %d interactions -> base %d / target %d / test %d rows; "
        "test users %d (%d cold), test items %d (%d cold)",
        dataset.name, summary["n_users"], summary["n_items"], summary["n_interactions"],
        summary["base_rows"], summary["target_rows"], summary["test_rows"],
        summary["test_users"], summary["test_users_cold"], summary["test_items"], summary["test_items_cold"],
    )
    counts = {k: float(v) for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    counts |= {f"loader_{k}": float(v) for k, v in dataset.stats.items()}
    return Result(
        metrics=counts,
        artifacts=["summary.json"],
    )


if __name__ == "__main__":
    from encore.pipeline.cli import component_main  # the CLI is no part of what this component computes

    sys.exit(component_main(NAME, description=__doc__ or ""))
