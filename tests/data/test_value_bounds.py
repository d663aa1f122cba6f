"""Values a dataset cannot hold are refused, naming the file, column and row (issue #25).

Weights are stored as 32-bit floats: a weight beyond its range, one that rounds to 0, and a
(user, item) pair whose duplicate rows sum beyond it are errors, not ``inf`` or 0 (both engines).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from encore.data import DataError
from encore.data.dataset_config import ColumnMapping
from encore.data.lastfm360k import load_lastfm360k
from encore.data.tabular import load_tabular

WEIGHTED = ColumnMapping(weight="weight")


def load_csv(path: Path, spark=None, columns: ColumnMapping = WEIGHTED, **kwargs):
    return load_tabular(path, columns, spark=spark, **kwargs)


def error_of(load) -> str:
    with pytest.raises(DataError) as exc:
        load()
    return str(exc.value)


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    from encore.data.spark_session import spark_session
    from tests.data.test_spark_engine import TEST_SETTINGS

    session = spark_session(TEST_SETTINGS)
    yield session
    session.stop()


def same_error(load, spark) -> str:
    pandas_message = error_of(lambda: load(None))
    assert error_of(lambda: load(spark)) == pandas_message
    return pandas_message


# --------------------------------------------------------------------------- 3. weights
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1e39", "'1e39' is beyond the 32-bit float range of weights"),
        ("3.5e38", "'3.5e38' is beyond the 32-bit float range of weights"),
        ("1e-50", "'1e-50' rounds to 0 as a 32-bit float (weights must be > 0"),
        ("1e-46", "'1e-46' rounds to 0 as a 32-bit float"),
    ],
)
def test_a_weight_a_float32_cannot_hold_is_refused(tmp_path: Path, value: str, expected: str) -> None:
    (tmp_path / "plays.csv").write_text(f"user,item,weight\n1,2,3\n1,3,{value}\n1,4,1\n")
    message = error_of(lambda: load_csv(tmp_path / "plays.csv"))
    assert message.startswith(f"plays.csv, column 'weight', row 2: {expected}")


def test_weights_within_float32_are_kept_exactly_as_before(tmp_path: Path) -> None:
    (tmp_path / "plays.csv").write_text("user,item,weight\n1,2,3e38\n1,3,2e-45\n1,4,0.5\n")
    dataset = load_csv(tmp_path / "plays.csv")
    np.testing.assert_array_equal(dataset.interactions["weight"].to_numpy(),
                                  np.array([3e38, 2e-45, 0.5], dtype=np.float32))


def test_duplicate_rows_summing_beyond_float32_are_refused(tmp_path: Path) -> None:
    (tmp_path / "plays.csv").write_text("user,item,weight\n1,2,1\n7,9,3e38\n1,3,1\n7,9,3e38\n")
    message = error_of(lambda: load_csv(tmp_path / "plays.csv"))
    assert message == ("plays.csv, column 'weight', row 2: the 2 rows of user 7, item 9 sum to 6e+38, beyond the "
                       "32-bit float range of weights (at most 3.40282e+38)")


def test_play_counts_summing_beyond_float32_name_the_plays_column(tmp_path: Path) -> None:
    line = "u\tm\tartist\t2e38\n"
    (tmp_path / "plays.tsv").write_text("v\tm\tother\t1\n" + line * 2)
    message = error_of(lambda: load_lastfm360k(tmp_path / "plays.tsv"))
    assert message.startswith("plays.tsv, column 'plays', row 2: the 2 rows of user 'u', item 'm' sum to 4e+38")


def test_item_feature_weights_are_bounded_too(tmp_path: Path) -> None:
    (tmp_path / "plays.csv").write_text("user,item\n1,2\n")
    (tmp_path / "features.csv").write_text("item,feature,weight\n2,rock,1\n2,pop,1e40\n")
    from encore.data.dataset_config import FeatureColumnMapping

    message = error_of(lambda: load_tabular(tmp_path / "plays.csv", ColumnMapping(),
                                            item_features=tmp_path / "features.csv",
                                            item_features_columns=FeatureColumnMapping(weight="weight")))
    assert message.startswith("features.csv, column 'weight', row 2: '1e40' is beyond the 32-bit float range")


def test_both_engines_refuse_the_same_weights(tmp_path: Path, spark) -> None:
    for i, body in enumerate(["1,2,3\n1,3,1e39\n", "1,2,3\n1,3,1e-50\n", "1,2,1\n7,9,3e38\n1,3,1\n7,9,3e38\n"]):
        path = tmp_path / f"plays{i}.csv"
        path.write_text("user,item,weight\n" + body)
        assert same_error(lambda s, path=path: load_csv(path, s), spark).startswith(f"plays{i}.csv, column 'weight'")
    table = {"u": [1, 2, 2], "i": [10, 20, 20], "w": [1.0, 2e38, 2e38]}
    pq.write_table(pa.table(table), tmp_path / "x.parquet")
    message = same_error(lambda s: load_csv(tmp_path / "x.parquet", s, ColumnMapping(user="u", item="i", weight="w")),
                         spark)
    assert message.startswith("x.parquet, column 'w', row 2: the 2 rows of user 2, item 20 sum to 4e+38")


# --------------------------------------------------------------------------- 5. ids as written
def test_feature_id_007_does_not_merge_with_item_7(tmp_path: Path) -> None:
    from encore.data.columns import FeatureColumnMapping

    (tmp_path / "plays.csv").write_text("user,item\n1,7\n2,8\n")
    (tmp_path / "features.csv").write_text("item,feature\n7,rock\n007,jazz\n")
    message = error_of(lambda: load_tabular(tmp_path / "plays.csv", ColumnMapping(),
                                            item_features=tmp_path / "features.csv",
                                            item_features_columns=FeatureColumnMapping()))
    assert message.startswith("features.csv, column 'item', row 2: '007' is not a known item id")
    # Written as the integers they are, the same ids match.
    (tmp_path / "features.csv").write_text("item,feature\n7,rock\n8,jazz\n")
    dataset = load_tabular(tmp_path / "plays.csv", ColumnMapping(), item_features=tmp_path / "features.csv",
                           item_features_columns=FeatureColumnMapping())
    assert len(dataset.item_tags) == 2


@pytest.mark.parametrize("written", ["007", "+7", "7.0", "7e0"])
def test_integer_ids_written_otherwise_are_refused(tmp_path: Path, written: str) -> None:
    # Last.fm 2K's ids are integers: "007" and "7" in one column would be one user.
    from encore.data.parsing import read_table, to_id_column

    (tmp_path / "user_friends.dat").write_text(f"userID\tfriendID\n7\t2\n{written}\t3\n")
    frame = read_table(tmp_path / "user_friends.dat")
    message = error_of(lambda: to_id_column(frame, "userID", file="user_friends.dat", integer=True))
    assert message == (f"user_friends.dat, column 'userID', row 2: '{written}' is not an integer id as written "
                       "(ids are integers here; it would merge with 7)")
    frame = read_table(tmp_path / "user_friends.dat").iloc[:1]
    assert to_id_column(frame, "userID", file="user_friends.dat", integer=True).tolist() == [7]


# --------------------------------------------------------------------------- 4. epoch units
TIMED = ColumnMapping(timestamp="ts")


def test_one_seconds_value_among_milliseconds_is_refused_naming_both_rows(tmp_path: Path) -> None:
    (tmp_path / "plays.csv").write_text("user,item,ts\n1,2,1600000000000\n1,3,1600000001000\n2,3,1600000002\n")
    message = error_of(lambda: load_csv(tmp_path / "plays.csv", columns=TIMED))
    assert message == ("plays.csv, column 'ts', row 3: '1600000002' looks like epoch seconds but row 1 "
                       "('1600000000000') like epoch milliseconds: one column must use one unit")


def test_one_milliseconds_value_among_seconds_is_refused(tmp_path: Path) -> None:
    pq.write_table(pa.table({"user": [1, 1, 2], "item": [2, 3, 3], "ts": [1_600_000_000, 1_600_000_000_000, 5]}),
                   tmp_path / "x.parquet")
    message = error_of(lambda: load_csv(tmp_path / "x.parquet", columns=TIMED))
    assert message == ("x.parquet, column 'ts', row 2: 1600000000000 looks like epoch milliseconds but row 1 "
                       "(1600000000) like epoch seconds: one column must use one unit")


@pytest.mark.parametrize(("scale", "unit"), [(10**6, "microseconds"), (10**9, "nanoseconds")])
def test_an_epoch_in_a_finer_unit_says_which_it_looks_like(tmp_path: Path, scale: int, unit: str) -> None:
    ts = [1_600_000_000 * scale, 1_600_000_001 * scale]
    pq.write_table(pa.table({"user": [1, 2], "item": [2, 3], "ts": ts}), tmp_path / "x.parquet")
    message = error_of(lambda: load_csv(tmp_path / "x.parquet", columns=TIMED))
    assert message == (f"x.parquet, column 'ts', row 1: {ts[0]} is out of the supported range 1678-2261 "
                       f"(it looks like epoch {unit}; Encore reads epoch seconds or milliseconds)")


def test_epochs_of_one_unit_read_as_before(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("user,item,ts\n1,2,1600000000\n1,3,0\n")
    (tmp_path / "ms.csv").write_text("user,item,ts\n1,2,1600000000000\n1,3,1600000000500\n")
    seconds = load_csv(tmp_path / "s.csv", columns=TIMED).interactions["timestamp"].tolist()
    millis = load_csv(tmp_path / "ms.csv", columns=TIMED).interactions["timestamp"].tolist()
    assert [str(t) for t in seconds] == ["2020-09-13 12:26:40", "1970-01-01 00:00:00"]
    assert [str(t) for t in millis] == ["2020-09-13 12:26:40", "2020-09-13 12:26:40.500000"]


def test_both_engines_refuse_mixed_and_finer_epochs_alike(tmp_path: Path, spark) -> None:
    cases = {
        "a.csv": "user,item,ts\n1,2,1600000000000\n1,3,1600000001000\n2,3,1600000002\n",
        "b.csv": "user,item,ts\n1,2,1600000000\n1,3,1600000001000\n2,3,1600000002000\n",
        "c.csv": "user,item,ts\n1,2,1600000000000000\n",
    }
    for name, body in cases.items():
        (tmp_path / name).write_text(body)
        message = same_error(lambda s, name=name: load_csv(tmp_path / name, s, TIMED), spark)
        assert message.startswith(f"{name}, column 'ts', row ")
    pq.write_table(pa.table({"user": [1, 1], "item": [2, 3], "ts": [1_600_000_000, 1_600_000_000_000]}),
                   tmp_path / "x.parquet")
    assert "row 2: 1600000000000 looks like epoch milliseconds but row 1" in same_error(
        lambda s: load_csv(tmp_path / "x.parquet", s, TIMED), spark)


# --------------------------------------------------------------------------- 6. id types, encodings
@pytest.mark.parametrize(
    ("values", "found"),
    [
        ([1.0, 2.0], "double"),
        ([True, False], "bool"),
        (pa.array([1.5, 2.5], pa.float32()), "float"),
        (pa.array([0, 1], pa.timestamp("ms")), "timestamp[ms]"),
        (pa.array([b"a", b"b"], pa.binary()), "binary"),
    ],
)
def test_parquet_id_columns_of_a_type_that_is_not_an_id_are_refused(tmp_path: Path, values, found: str) -> None:
    pq.write_table(pa.table({"user": values, "item": [1, 2]}), tmp_path / "x.parquet")
    message = error_of(lambda: load_csv(tmp_path / "x.parquet", columns=ColumnMapping()))
    assert message == (f"x.parquet, column 'user': holds {found} values: ids must be integers or text "
                       "(cast the column to int64 or string)")


def test_parquet_feature_ids_are_typed_too(tmp_path: Path) -> None:
    from encore.data.columns import FeatureColumnMapping

    pq.write_table(pa.table({"user": [1, 2], "item": [7, 8]}), tmp_path / "x.parquet")
    pq.write_table(pa.table({"item": [7.0, 8.0], "feature": ["rock", "pop"]}), tmp_path / "f.parquet")
    message = error_of(lambda: load_tabular(tmp_path / "x.parquet", ColumnMapping(),
                                            item_features=tmp_path / "f.parquet",
                                            item_features_columns=FeatureColumnMapping()))
    assert message.startswith("f.parquet, column 'item': holds double values")


def test_integer_and_text_ids_in_parquet_still_load(tmp_path: Path) -> None:
    pq.write_table(pa.table({"user": pa.array([1, 2], pa.int32()), "item": ["a", "b"]}), tmp_path / "x.parquet")
    dataset = load_csv(tmp_path / "x.parquet", columns=ColumnMapping())
    assert dataset.user_ids.tolist() == [1, 2] and dataset.item_ids.tolist() == ["a", "b"]


def test_both_engines_refuse_float_ids_alike(tmp_path: Path, spark) -> None:
    pq.write_table(pa.table({"user": [1, 2], "item": [1.0, 2.0]}), tmp_path / "x.parquet")
    message = same_error(lambda s: load_csv(tmp_path / "x.parquet", s, ColumnMapping()), spark)
    assert message.startswith("x.parquet, column 'item': holds double values")


@pytest.mark.parametrize(
    ("encoding", "found", "iconv"),
    [
        ("utf-16", "UTF-16LE (byte-order mark fffe)", "UTF-16"),
        ("utf-16-le", "UTF-16LE (no byte-order mark)", "UTF-16LE"),
        ("utf-16-be", "UTF-16BE (no byte-order mark)", "UTF-16BE"),
        ("utf-32", "UTF-32LE (byte-order mark fffe0000)", "UTF-32"),
    ],
)
def test_a_file_in_a_wide_unicode_encoding_says_what_it_is(tmp_path: Path, encoding: str, found: str,
                                                           iconv: str) -> None:
    (tmp_path / "plays.csv").write_bytes("user,item\n1,2\n3,é\n".encode(encoding))
    message = error_of(lambda: load_csv(tmp_path / "plays.csv", columns=ColumnMapping()))
    assert message == (f"plays.csv: the file is {found}, not UTF-8, which is the only text encoding Encore reads: "
                       f"convert it (e.g. iconv -f {iconv} -t utf-8)")


def test_both_engines_name_a_wide_encoding_and_a_float_id_alike(tmp_path: Path, spark) -> None:
    (tmp_path / "plays.tsv").write_bytes("user\titem\n1\t2\n".encode("utf-16"))
    message = same_error(lambda s: load_csv(tmp_path / "plays.tsv", s, ColumnMapping(), sep="\t"), spark)
    assert message.startswith("plays.tsv: the file is UTF-16LE (byte-order mark fffe), not UTF-8")


def test_yandex_track_ids_stored_as_floats_are_refused(tmp_path: Path) -> None:
    from encore.data.yandex import load_yandex
    from tests.data.test_loaders import write_yandex

    events, tracks, names = write_yandex(tmp_path)
    table = pq.read_table(tracks)
    index = table.schema.get_field_index("track_id")
    table = table.set_column(index, "track_id", table["track_id"].cast(pa.float64()))
    pq.write_table(table, tracks)
    message = error_of(lambda: load_yandex(events, tracks, names))
    assert message.startswith(f"{tracks.name}, column 'track_id': holds double values: ids must be integers or text")


def test_zero_interactions_after_filtering_is_one_line_not_an_index_error() -> None:
    """A filter that keeps no interaction (a tagging window after the last tag, say) used to end
    in an IndexError deep in the dataset build."""
    from encore.data.dataset import DataError
    from encore.data.parsing import build_dataset

    empty = pd.DataFrame({"user": pd.Series([], dtype=str), "item": pd.Series([], dtype=str),
                          "weight": pd.Series([], dtype=float)})
    with pytest.raises(DataError, match=r"^plays\.tsv: no interactions left to build the tab dataset from"):
        build_dataset("tab", empty, interactions_file="plays.tsv")
