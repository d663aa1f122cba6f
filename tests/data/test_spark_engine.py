"""The Spark engine (``dataset.engine: spark``) gives the pandas engine's dataset and errors.

Every loader's small files (from tests/data/test_loaders.py) and the real Last.fm 2K plays are read
by both engines and compared field by field; every bad-input case must fail with the same
message, row numbers included, also deep in a file Spark reads as many partitions.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from pyspark.sql import SparkSession

from encore.config.experiment import ConfigError
from encore.data import DataError, MusicDataset, load_dataset
from encore.data.dataset_config import ColumnMapping, Lastfm1kConfig, TabularConfig
from encore.data.lastfm1k import load_lastfm1k
from encore.data.lastfm360k import load_lastfm360k
from encore.data.spark_session import DEFAULT_SPARK_CONFIG, SparkSettings, load_spark_settings, spark_session
from encore.data.tabular import load_tabular
from encore.data.yandex import load_yandex
from tests.conftest import REPO_ROOT
from tests.data.test_loaders import LASTFM1K, LASTFM360K, write_yandex

# 256-byte partitions: the small test files are read as many partitions, so row numbers
# and "first seen" names are checked across partition boundaries.
TEST_SETTINGS = SparkSettings(
    master="local[2]", driver_memory="1g", shuffle_partitions=2,
    conf={"spark.ui.enabled": False, "spark.ui.showConsoleProgress": False,
          "spark.sql.files.maxPartitionBytes": 256, "spark.sql.files.openCostInBytes": 256},
)


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    session = spark_session(TEST_SETTINGS)
    yield session
    session.stop()


def assert_same_dataset(pandas_ds: MusicDataset, spark_ds: MusicDataset) -> None:
    assert spark_ds.name == pandas_ds.name
    np.testing.assert_array_equal(spark_ds.user_ids, pandas_ds.user_ids)
    np.testing.assert_array_equal(spark_ds.item_ids, pandas_ds.item_ids)
    assert spark_ds.user_ids.dtype.kind == pandas_ds.user_ids.dtype.kind
    if pandas_ds.item_names is None:
        assert spark_ds.item_names is None
    else:
        assert spark_ds.item_names.tolist() == pandas_ds.item_names.tolist()
    pd.testing.assert_frame_equal(spark_ds.interactions, pandas_ds.interactions)
    for side in ("item_tags", "user_item_tags", "social"):
        left, right = getattr(pandas_ds, side), getattr(spark_ds, side)
        assert (left is None) == (right is None)
        if left is not None:
            pd.testing.assert_frame_equal(right, left)
    assert spark_ds.stats == pandas_ds.stats
    assert spark_ds.files == pandas_ds.files


def both_engines(load: Callable[[SparkSession | None], MusicDataset], spark: SparkSession) -> MusicDataset:
    pandas_ds = load(None)
    spark_ds = load(spark)
    assert_same_dataset(pandas_ds, spark_ds)
    return spark_ds


def same_error(load: Callable[[SparkSession | None], object], spark: SparkSession) -> str:
    with pytest.raises(DataError) as pandas_exc:
        load(None)
    with pytest.raises(DataError) as spark_exc:
        load(spark)
    assert str(spark_exc.value) == str(pandas_exc.value)
    return str(spark_exc.value)


# --------------------------------------------------------------------------- same datasets
def test_lastfm1k_same_dataset(tmp_path: Path, spark: SparkSession) -> None:
    path = tmp_path / "events.tsv"
    path.write_text(LASTFM1K * 20, encoding="utf-8")  # ~2 KB: eight partitions
    ds = both_engines(lambda s: load_lastfm1k(path, spark=s), spark)
    assert ds.stats["play_events_aggregated"] == 20 * 6 - 3  # three (user, artist) pairs
    both_engines(lambda s: load_lastfm1k(path, item="track", spark=s), spark)
    # max_rows takes the first rows of the file, across partitions.
    ds = both_engines(lambda s: load_lastfm1k(path, item="track", max_rows=9, spark=s), spark)
    assert ds.stats["interaction_rows_read"] == 9


@pytest.mark.parametrize("line", ["u\tm\tn\t-4\n", "u\tm\tn\tlots\n", "u\t\t\t4\n", "\tm\tn\t4\n", "\t\t\t0\n"])
def test_lastfm360k_same_errors(tmp_path: Path, spark: SparkSession, line: str) -> None:
    path = tmp_path / "plays.tsv"
    path.write_text(LASTFM360K + line + LASTFM360K, encoding="utf-8")
    if line.endswith("\t0\n"):  # a zero-play row is dropped before its ids are checked: no error
        both_engines(lambda s: load_lastfm360k(path, spark=s), spark)
    else:
        assert "plays.tsv, column '" in same_error(lambda s: load_lastfm360k(path, spark=s), spark)


def test_lastfm360k_same_dataset(tmp_path: Path, spark: SparkSession) -> None:
    path = tmp_path / "plays.tsv"
    path.write_text(LASTFM360K * 5, encoding="utf-8")
    ds = both_engines(lambda s: load_lastfm360k(path, spark=s), spark)
    assert ds.stats["zero_play_rows_dropped"] == 5
    (tmp_path / "zero.tsv").write_text("u\tm\tn\t0\n")
    assert "no rows with a positive value" in same_error(lambda s: load_lastfm360k(tmp_path / "zero.tsv", spark=s),
                                                          spark)


def test_yandex_same_dataset(tmp_path: Path, spark: SparkSession) -> None:
    events, tracks, names = write_yandex(tmp_path)
    both_engines(lambda s: load_yandex(events, tracks, names, spark=s), spark)
    # Epoch milliseconds and text timestamps, in a Parquet file of many row groups.
    n = 400
    rng = np.random.default_rng(0)
    table = pa.table({"user_id": rng.integers(1, 30, n), "track_id": rng.choice([100, 200, 300], n),
                      "started_at": rng.integers(1_600_000_000_000, 1_700_000_000_000, n)})
    pq.write_table(table, tmp_path / "ms.parquet", row_group_size=50)
    both_engines(lambda s: load_yandex(tmp_path / "ms.parquet", tracks, spark=s), spark)
    text = table.set_column(2, "started_at", pa.array(
        pd.to_datetime(table["started_at"].to_numpy(), unit="ms").strftime("%Y-%m-%dT%H:%M:%SZ").tolist()))
    pq.write_table(text, tmp_path / "text.parquet", row_group_size=50)
    both_engines(lambda s: load_yandex(tmp_path / "text.parquet", tracks, spark=s), spark)


def test_tabular_same_dataset(tmp_path: Path, spark: SparkSession) -> None:
    rows = ["listener,song,plays,when"] + [
        f"u{i % 7},{'007' if i % 5 == 0 else i % 11},{1 + i % 3},{1_600_000_000 + 37 * i}" for i in range(300)
    ] + ['u1,"song, with comma",2,1600000000', 'u2,"say ""hi""",1.5,1600000001']
    (tmp_path / "plays.csv").write_text("\n".join(rows) + "\n")
    cols = ColumnMapping(user="listener", item="song", weight="plays", timestamp="when")
    ds = both_engines(lambda s: load_tabular(tmp_path / "plays.csv", cols, spark=s), spark)
    assert {"song, with comma", 'say "hi"', "007"} <= set(ds.item_ids)
    pd.DataFrame({"u": ["10", "9", "10"], "i": ["007", "7", "007"], "w": [1.5, 2.0, 0.5],
                  "t": ["2020-01-01T00:00:00Z", "2020-01-02", "2020-01-03T12:00:00+02:00"]}).to_parquet(
        tmp_path / "x.parquet")
    ds = both_engines(lambda s: load_tabular(tmp_path / "x.parquet", ColumnMapping(
        user="u", item="i", weight="w", timestamp="t"), spark=s), spark)
    assert ds.interactions.timestamp.max() == pd.Timestamp("2020-01-03 10:00")


def test_ids_with_surrounding_spaces_are_stripped_by_both_engines(tmp_path: Path, spark: SparkSession,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    rows = ["user,item,plays"] + [f"{' 2' if i % 2 else '2'},{i % 4} ,{1 + i}" for i in range(20)] + ["3,1,4"]
    (tmp_path / "padded.csv").write_text("\n".join(rows) + "\n")
    cols = ColumnMapping(user="user", item="item", weight="plays")
    with caplog.at_level("WARNING"):
        ds = both_engines(lambda s: load_tabular(tmp_path / "padded.csv", cols, spark=s), spark)
    assert ds.user_ids.tolist() == [2, 3] and ds.item_ids.tolist() == [0, 1, 2, 3]
    said = [r.getMessage() for r in caplog.records if "stripped surrounding whitespace" in r.getMessage()]
    assert said == ["padded.csv: stripped surrounding whitespace from ids in column user",
                    "padded.csv: stripped surrounding whitespace from ids in column item"] * 2


@pytest.mark.realdata
def test_real_lastfm2k_plays_same_dataset(lastfm2k_dir: Path, spark: SparkSession) -> None:
    cols = ColumnMapping(user="userID", item="artistID", weight="weight")
    path = lastfm2k_dir / "user_artists.dat"
    spark.conf.set("spark.sql.files.maxPartitionBytes", "64k")  # 21 partitions of the 1.3 MB file
    try:
        ds = both_engines(lambda s: load_tabular(path, cols, sep="\t", spark=s), spark)
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", "256")
    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (1892, 17632, 92834)


# --------------------------------------------------------------------------- same errors
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("user_000003\t2009-13-45T99:00:00Z\tx\tA\t\tT\n", "column 'timestamp', row 7: '2009-13-45T99:00:00Z' is not"),
        ("user_000003\t\tx\tA\t\tT\n", "column 'timestamp', row 7: empty timestamp"),
        ("user_000003\t3000-01-01T00:00:00Z\tx\tA\t\tT\n", "column 'timestamp', row 7: '3000-01-01T00:00:00Z' is out"),
        ("\t2009-05-04T23:08:57Z\tx\tA\t\tT\n", "column 'userid', row 7: empty id"),
        ("user_000003\t2009-05-04T23:08:57Z\t\t\t\tT\n", "column 'artist_name', row 7: neither"),
        ("user_000003\t2009-05-04T23:08:57Z\t\t\n", "column 'artist_name', row 7: neither"),  # too few fields
    ],
)
def test_lastfm1k_same_errors(tmp_path: Path, spark: SparkSession, line: str, expected: str) -> None:
    path = tmp_path / "events.tsv"
    path.write_text(LASTFM1K + line + LASTFM1K, encoding="utf-8")
    assert f"events.tsv, {expected}" in same_error(lambda s: load_lastfm1k(path, spark=s), spark)


@pytest.mark.parametrize(
    ("plays", "expected"),
    [
        ("user,item,weight\n1,2,3\n1,3,x\n", "column 'weight', row 2: 'x' is not a number"),
        ("user,item,weight\n1,2,3\n1,3,-1\n", "column 'weight', row 2: '-1' is negative"),
        ("user,item,weight\n1,2,3\n1,3,0\n", "column 'weight', row 2: '0' is zero"),
        ("user,item,weight\n1,2,3\n1,3,inf\n", "column 'weight', row 2: 'inf' is not a finite number"),
        ("user,item,weight\n1,2,3\n1,3,\n", "column 'weight', row 2: empty value"),
        ("user,item,weight\n1,2,3\n,3,1\n", "column 'user', row 2: empty id"),
        ("user,item,weight\n1,2,3\n1, ,1\n", "column 'item', row 2: empty id"),
        ("usr,item,weight\n1,2,3\n", "column 'user': missing in the interactions file; columns found: 'usr'"),
        ("user,item,weight\n", "no data rows (empty interactions file)"),
        ("", "no data rows (empty interactions file)"),
    ],
)
def test_tabular_same_errors(tmp_path: Path, spark: SparkSession, plays: str, expected: str) -> None:
    (tmp_path / "plays.csv").write_text(plays)
    message = same_error(lambda s: load_tabular(tmp_path / "plays.csv", ColumnMapping(weight="weight"), spark=s),
                         spark)
    assert f"plays.csv{'' if expected.startswith('no data') else ', '}" in message and expected in message


def test_tabular_same_timestamp_encoding_and_missing_file_errors(tmp_path: Path, spark: SparkSession) -> None:
    (tmp_path / "plays.csv").write_text("user,item,ts\n1,2,2020-01-01\n1,3,01/02/2020\n")
    message = same_error(lambda s: load_tabular(tmp_path / "plays.csv", ColumnMapping(timestamp="ts"), spark=s),
                         spark)
    assert "plays.csv, column 'ts', row 2: '01/02/2020' is not a timestamp" in message

    (tmp_path / "plays.tsv").write_bytes(b"user\titem\n1\t2\n1\t\xe9t\xe9\n")
    message = same_error(lambda s: load_tabular(tmp_path / "plays.tsv", ColumnMapping(), sep="\t", spark=s), spark)
    assert "plays.tsv, column 'item', row 2: byte 0xe9 at byte offset" in message

    message = same_error(lambda s: load_tabular(tmp_path / "none.csv", ColumnMapping(), spark=s), spark)
    assert "none.csv: interactions file not found" in message


@pytest.mark.parametrize("line", ["1,3,4,5", "1,3,4,", "1,3,4,5,6,7"])
def test_malformed_line_names_the_row(tmp_path: Path, spark: SparkSession, line: str) -> None:
    (tmp_path / "plays.csv").write_text(f"user,item,weight\n1,2,3\n{line}\n1,4,1\n")
    message = same_error(lambda s: load_tabular(tmp_path / "plays.csv", ColumnMapping(weight="weight"), spark=s),
                         spark)
    assert message.startswith("plays.csv, row 2: malformed line (Expected 3 fields in line 3, saw")
    tabbed = line.replace(",", "\t")
    (tmp_path / "plays.tsv").write_text(f"user\titem\tweight\n\n1\t2\t3\n{tabbed}\n")
    message = same_error(lambda s: load_tabular(tmp_path / "plays.tsv", ColumnMapping(weight="weight"), sep="\t",
                                                spark=s), spark)
    assert "malformed line (Expected 3 fields in line 4, saw" in message  # the blank line counts as a line


def test_row_numbers_deep_in_a_many_partition_file(tmp_path: Path, spark: SparkSession) -> None:
    lines = [f"u{i % 50},i{i % 300},{1 + i % 4}" for i in range(5000)]
    lines[3210] = "u1,i1,-2"
    lines[4000] = ",i1,1"  # a later error of an earlier-checked column: the user check still wins
    (tmp_path / "plays.csv").write_text("user,item,weight\n" + "\n".join(lines) + "\n")
    message = same_error(lambda s: load_tabular(tmp_path / "plays.csv", ColumnMapping(weight="weight"), spark=s),
                         spark)
    assert "plays.csv, column 'user', row 4001: empty id" in message
    assert spark.read.csv(str(tmp_path / "plays.csv")).rdd.getNumPartitions() > 100


@pytest.mark.parametrize(
    ("column", "values", "expected"),
    [
        ("w", [1.0, float("nan"), 2.0], "column 'w', row 2: empty value"),
        ("u", pa.array([1, None, 2], pa.int64()), "column 'u', row 2: empty value"),
        # Ids stored as floats are refused by type, before any value (#25 item 6).
        ("u", [1.0, 2.5, 3.0], "column 'u': holds double values: ids must be integers or text"),
        ("i", [1.0, float("inf"), 3.0], "column 'i': holds double values: ids must be integers or text"),
        ("u", [True, False, True], "column 'u': holds bool values: ids must be integers or text"),
        ("t", [1.6e9, float("nan"), 1.6e9], "column 't', row 2: empty timestamp"),
        ("t", ["2020-01-01", "12:00:00", "2020-01-02"], "column 't', row 2: '12:00:00' is not a timestamp"),
        ("t", ["2020-01-01", "2020-01-02T00:00 Europe/Paris", "x"], "column 't', row 2: '2020-01-02T00:00 Europe"),
        # Not all numbers: ISO 8601 text, which the numbers are not (both engines).
        ("t", ["1600000000", "1600000001d", "1600000002"], "column 't', row 1: '1600000000' is not a timestamp"),
        ("w", ["1", "3d", "2"], "column 'w', row 2: '3d' is not a number"),
        ("w", ["1", "-2f", "2"], "column 'w', row 2: '-2f' is not a number"),
    ],
)
def test_parquet_values_same_errors(tmp_path: Path, spark: SparkSession, column: str, values: list,
                                    expected: str) -> None:
    table = {"u": [1, 2, 3], "i": [10, 20, 30], "w": [1.0, 1.0, 1.0], "t": [1.6e9, 1.6e9 + 1, 1.6e9 + 2]}
    table[column] = values
    pq.write_table(pa.table(table), tmp_path / "x.parquet")
    cols = ColumnMapping(user="u", item="i", weight="w", timestamp="t")
    assert f"x.parquet, {expected}" in same_error(lambda s: load_tabular(tmp_path / "x.parquet", cols, spark=s),
                                                  spark)


def test_timestamps_same_to_the_microsecond(tmp_path: Path, spark: SparkSession) -> None:
    ns = pd.to_datetime(["2020-01-01 00:00:00.123456789", "1969-12-31 23:59:59.999999999", "2021-06-01"],
                        format="ISO8601")
    pd.DataFrame({"u": [1, 1, 2], "i": [1, 1, 2], "t": ns}).to_parquet(tmp_path / "ns.parquet")
    cols = ColumnMapping(user="u", item="i", timestamp="t")
    ds = both_engines(lambda s: load_tabular(tmp_path / "ns.parquet", cols, spark=s), spark)
    assert ds.interactions.timestamp.iloc[0] == pd.Timestamp("2020-01-01 00:00:00.123456")  # floored, both engines
    (tmp_path / "t.csv").write_text("u,i,t\n1,1,2009-05-04T23:08:57.1234567Z\n2,2,2009-05-04 23:08\n3,3,2009-5-4\n"
                                    "4,4,2009-05-04T23:08:57+0200\n5,5,2009-05\n")
    both_engines(lambda s: load_tabular(tmp_path / "t.csv", cols, spark=s), spark)


def test_blank_lines_and_lines_of_tabs(tmp_path: Path, spark: SparkSession) -> None:
    # pandas skips empty lines and lines of spaces, but a line of tabs is a row of empty fields.
    (tmp_path / "ok.tsv").write_text("\n  \nuser\titem\n1\t2\n\n   \n1\t3\n")
    both_engines(lambda s: load_tabular(tmp_path / "ok.tsv", ColumnMapping(), sep="\t", spark=s), spark)
    (tmp_path / "ok.csv").write_text("\nuser,item\n1,2\n\n1,3\n")
    both_engines(lambda s: load_tabular(tmp_path / "ok.csv", ColumnMapping(), spark=s), spark)
    (tmp_path / "tabs.tsv").write_text("user\titem\n1\t2\n\t\n1\t3\n")
    message = same_error(lambda s: load_tabular(tmp_path / "tabs.tsv", ColumnMapping(), sep="\t", spark=s), spark)
    assert "tabs.tsv, column 'user', row 2: empty id" in message


def test_undecodable_byte_in_a_column_the_loader_does_not_use(tmp_path: Path, spark: SparkSession) -> None:
    path = tmp_path / "events.tsv"
    path.write_bytes(LASTFM1K.encode() + b"user_000003\t2009-05-04T23:08:57Z\tx\tA\t\tCaf\xe9\n")
    message = same_error(lambda s: load_lastfm1k(path, spark=s), spark)  # artists: track names are not used
    assert "events.tsv, column 'track_name', row 7: byte 0xe9" in message
    (tmp_path / "bom.tsv").write_bytes(b"\xef\xbb\xbf" + LASTFM1K.encode())
    both_engines(lambda s: load_lastfm1k(tmp_path / "bom.tsv", spark=s), spark)


def test_yandex_same_errors(tmp_path: Path, spark: SparkSession) -> None:
    bad_ts = pa.table({"user_id": [1, 2, 3], "track_id": [100, 100, 200],
                       "started_at": ["2023-01-01", "2023-01-02", "later"]})
    events, tracks, names = write_yandex(tmp_path, events=bad_ts)
    message = same_error(lambda s: load_yandex(events, tracks, names, spark=s), spark)
    assert "interactions.parquet, column 'started_at', row 3: 'later' is not a timestamp" in message
    no_col = pa.table({"user": [1], "track_id": [100], "started_at": ["2023-01-01"]})
    events, tracks, names = write_yandex(tmp_path, events=no_col)
    message = same_error(lambda s: load_yandex(events, tracks, names, spark=s), spark)
    assert "interactions.parquet, column 'user_id': missing" in message
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    for engine in (None, spark):
        with pytest.raises(DataError, match=r"broken.parquet: not a readable Parquet interactions file"):
            load_yandex(tmp_path / "broken.parquet", tracks, spark=engine)


# --------------------------------------------------------------------------- configuration
def test_engine_is_a_validated_dataset_key(tmp_path: Path, spark: SparkSession) -> None:
    path = tmp_path / "events.tsv"
    path.write_text(LASTFM1K, encoding="utf-8")
    ds = load_dataset(Lastfm1kConfig(path=path, engine="spark"), data_dir=tmp_path, spark_settings=TEST_SETTINGS)
    assert ds.stats["play_events_aggregated"] == 3
    with pytest.raises(ValueError, match="engine"):
        TabularConfig(interactions=path, engine="dask")


def test_spark_settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = load_spark_settings(DEFAULT_SPARK_CONFIG)
    assert shipped.spark_conf()["spark.sql.session.timeZone"] == "UTC"
    assert shipped.spark_conf()["spark.ui.enabled"] == "false"
    bad = tmp_path / "spark.yaml"
    bad.write_text(yaml.safe_dump({"master": "local[2]", "driver_memry": "2g", "shuffle_partitions": 0}))
    with pytest.raises(ConfigError) as exc:
        load_spark_settings(bad)
    assert "driver_memry: Extra inputs are not permitted" in str(exc.value)
    assert "shuffle_partitions: Input should be greater than 0" in str(exc.value)
    monkeypatch.setenv("ENCORE_SPARK_CONFIG", str(bad))
    with pytest.raises(ConfigError, match=str(bad)):
        load_spark_settings()
    with pytest.raises(ConfigError, match="Spark settings file not found"):
        load_spark_settings(tmp_path / "missing.yaml")


def test_master_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """ENCORE_SPARK_MASTER points the same settings at a cluster without editing the file."""
    monkeypatch.setenv("ENCORE_SPARK_MASTER", "spark://127.0.0.1:7077")
    assert load_spark_settings(DEFAULT_SPARK_CONFIG).master == "spark://127.0.0.1:7077"
    monkeypatch.delenv("ENCORE_SPARK_MASTER")
    assert load_spark_settings(DEFAULT_SPARK_CONFIG).master == "local[*]"


def test_missing_java_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from encore.data import spark_session as spark_module

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match="needs a Java 17\\+ runtime"):
        spark_module._check_java()


# --------------------------------------------------------------------------- the pipeline
@pytest.mark.realdata
def test_run_sh_prepare_with_spark_matches_pandas(tmp_path: Path, lastfm2k_dir: Path) -> None:
    """run.sh --components prepare on Last.fm 2K plays: the Spark engine writes the same split."""
    experiment = {
        "experiment": {"name": "plays", "seed": 5},
        "dataset": {"kind": "tabular", "interactions": str(lastfm2k_dir / "user_artists.dat"), "sep": "\t",
                    "columns": {"user": "userID", "item": "artistID", "weight": "weight"}},
    }
    (tmp_path / "plays.yaml").write_text(yaml.safe_dump(experiment))
    (tmp_path / "spark.yaml").write_text(yaml.safe_dump(
        {"master": "local[2]", "driver_memory": "1g", "conf": {"spark.ui.enabled": False}}))
    env = {"ENCORE_OUTPUT_DIR": str(tmp_path / "outputs"), "ENCORE_SPARK_CONFIG": str(tmp_path / "spark.yaml"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    for engine in ("pandas", "spark"):
        done = subprocess.run(
            ["bash", str(REPO_ROOT / "scripts/pipeline/run.sh"), "--experiment", str(tmp_path / "plays.yaml"),
             "--components", "prepare", "--set", f"dataset.engine={engine}"],
            capture_output=True, text=True, env={**_base_env(), **env}, timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    outputs = sorted((tmp_path / "outputs" / "plays").glob("prepare-*"))
    assert len(outputs) == 2  # the engine is part of the configuration
    for part in ("base", "target", "test", "users", "items"):
        frames = [pd.read_parquet(out / f"{part}.parquet") for out in outputs]
        pd.testing.assert_frame_equal(frames[0], frames[1])


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in {"ENCORE_SPARK_CONFIG", "PYSPARK_SUBMIT_ARGS"}} | {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    }
