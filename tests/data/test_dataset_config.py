"""Dataset configuration: discriminated union, strictness, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from encore.data.dataset_config import (
    LASTFM2K_URL,
    DatasetConfig,
    Lastfm1kConfig,
    Lastfm2kConfig,
    SyntheticConfig,
    TabularConfig,
    YandexConfig,
)

ADAPTER = TypeAdapter(DatasetConfig)


def test_discriminator_picks_the_model() -> None:
    cfg = ADAPTER.validate_python({"kind": "lastfm2k"})
    assert isinstance(cfg, Lastfm2kConfig) and cfg.download and cfg.url == LASTFM2K_URL and cfg.path is None
    assert isinstance(ADAPTER.validate_python({"kind": "synthetic"}), SyntheticConfig)
    one_k = ADAPTER.validate_python({"kind": "lastfm1k", "path": "data/x.tsv", "item": "track"})
    assert isinstance(one_k, Lastfm1kConfig) and one_k.path == Path("data/x.tsv")
    yandex = ADAPTER.validate_python({"kind": "yandex", "interactions": "a.parquet", "tracks": "t.parquet"})
    assert isinstance(yandex, YandexConfig) and yandex.catalog_names is None
    tab = ADAPTER.validate_python(
        {"kind": "tabular", "interactions": "x.csv", "columns": {"user": "u", "item": "i", "weight": "w"}}
    )
    assert isinstance(tab, TabularConfig) and tab.columns.weight == "w" and tab.sep == ","


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"kind": "lastfm2k", "pth": "x"}, "Extra inputs are not permitted"),
        ({"kind": "nope"}, "kind: unknown source 'nope'"),
        ({"kind": "lastfm1k", "path": "x", "item": "album"}, "Input should be 'artist' or 'track'"),
        ({"kind": "lastfm1k", "path": "x", "max_rows": 0}, "greater than 0"),
        ({"kind": "tabular", "interactions": "x", "columns": {"user": "a", "item": "a"}}, "columns must be distinct"),
        ({"kind": "tabular", "interactions": "x", "columns": {"usr": "a"}}, "Extra inputs are not permitted"),
        ({"kind": "tabular", "interactions": "x", "sep": ";;"}, "at most 1 character"),
        ({"kind": "synthetic", "n_users": 3, "n_items": 3, "n_interactions": 10}, "possible (user, item) pairs"),
    ],
)
def test_invalid_configs(data: dict, fragment: str) -> None:
    with pytest.raises(ValidationError) as exc:
        ADAPTER.validate_python(data)
    assert fragment in str(exc.value)
