"""Loaders: each source on small realistic files, every bad-input case, and the real Last.fm 2K."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from encore.data import DataError, load_dataset
from encore.data.columns import ReleaseColumnMapping
from encore.data.dataset_config import ColumnMapping, FeatureColumnMapping, Lastfm2kConfig, TabularConfig
from encore.data.lastfm1k import load_lastfm1k
from encore.data.lastfm2k import DatasetNotFound, load_lastfm2k, resolve_lastfm2k_dir
from encore.data.lastfm360k import load_lastfm360k
from encore.data.parsing import read_table
from encore.data.tabular import load_tabular
from encore.data.yandex import load_yandex

REAL_LASTFM2K = Path(
    os.environ.get(
        "ENCORE_LASTFM2K_DIR",
        Path(__file__).resolve().parents[2].parent / "shared/datasets/hetrec2011-lastfm-2k",
    )
)


def message(exc: pytest.ExceptionInfo[BaseException]) -> str:
    return str(exc.value)


# --------------------------------------------------------------------------- Last.fm 2K
LASTFM2K_FILES = {
    "user_artists.dat": (
        "userID\tartistID\tweight\r\n2\t51\t13883\r\n2\t52\t11690\r\n3\t52\t5\r\n3\t53\t120\r\n4\t51\t7\r\n"
    ),
    "artists.dat": (
        "id\tname\turl\tpictureURL\n"
        "51\tDuran Duran\thttp://www.last.fm/music/Duran+Duran\thttp://x/1.jpg\n"
        "52\tMorcheeba\thttp://www.last.fm/music/Morcheeba\t\n"
        '53\tRöyksopp "live"\thttp://www.last.fm/music/R%C3%B6yksopp\thttp://x/3.jpg\n'
        "54\tЛенинград\thttp://www.last.fm/music/x\thttp://x/4.jpg\n"
    ),
    "tags.dat": "tagID\ttagValue\r\n1\tmetal\r\n2\trock fran\ufffdais\r\n3\tnone\r\n",
    "user_taggedartists.dat": (
        "userID\tartistID\ttagID\tday\tmonth\tyear\n"
        "2\t52\t1\t1\t4\t2009\n"
        "2\t52\t3\t1\t4\t2009\n"
        "3\t99\t2\t1\t5\t2009\n"  # artist 99 is not in artists.dat: dropped, like the real data
        "4\t54\t2\t1\t6\t2010\n"
    ),
    "user_friends.dat": "userID\tfriendID\r\n2\t3\r\n3\t2\r\n3\t4\r\n4\t3\r\n",
}


def write_lastfm2k(folder: Path, **replace: str | bytes | None) -> Path:
    """Write the small Last.fm 2K folder; ``replace`` swaps a file's content (None = omit it)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {**LASTFM2K_FILES, **{k.replace("__", "."): v for k, v in replace.items()}}
    for name, content in files.items():
        if content is None:
            continue
        data = content if isinstance(content, bytes) else content.encode("utf-8")
        (folder / name).write_bytes(data)
    return folder


def test_lastfm2k_loads_small_folder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = write_lastfm2k(tmp_path / "lastfm")
    with caplog.at_level(logging.INFO):
        ds = load_lastfm2k(folder)
    assert ds.name == "lastfm2k"
    assert ds.user_ids.tolist() == [2, 3, 4]
    assert ds.item_ids.tolist() == [51, 52, 53, 54]  # every artist of artists.dat, even unheard 54
    assert ds.item_names.tolist() == ["Duran Duran", "Morcheeba", 'Röyksopp "live"', "Ленинград"]
    assert ds.tag_names.tolist() == ["metal", "rock fran\ufffdais", "none"]
    inter = ds.interactions
    assert inter.dtypes.to_dict() == {"user": np.int32, "item": np.int32, "weight": np.float32}
    assert list(zip(inter.user, inter.item, inter.weight, strict=True)) == [
        (0, 0, 13883), (0, 1, 11690), (1, 1, 5), (1, 2, 120), (2, 0, 7),
    ]
    assert not ds.has_timestamps
    # (3, 99, 2) references no artist: dropped, counted, logged.
    assert ds.user_item_tags.to_dict("list") == {"user": [0, 0, 2], "item": [1, 1, 3], "tag": [0, 2, 1]}
    assert ds.stats["user_item_tags_dropped_unknown_item"] == 1
    assert "user_taggedartists.dat: dropping 1 rows whose artistID" in caplog.text
    assert ds.social.to_dict("list") == {"user": [0, 1, 1, 2], "friend": [1, 0, 2, 1]}
    assert set(ds.files) == {"interactions", "artists", "tags", "user_tags", "friends"}
    assert all(p.is_file() for p in ds.files.values())
    assert ds.stats["duplicate_rows_aggregated"] == 0


def test_lastfm2k_duplicates_aggregated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ua = LASTFM2K_FILES["user_artists.dat"] + "2\t51\t17\r\n3\t53\t1\r\n"
    folder = write_lastfm2k(tmp_path, user_artists__dat=ua)
    with caplog.at_level(logging.INFO):
        ds = load_lastfm2k(folder)
    assert ds.stats["duplicate_rows_aggregated"] == 2
    assert "aggregated 2 duplicate (user, item) rows of user_artists.dat" in caplog.text
    weights = {(u, i): w for u, i, w in zip(ds.interactions.user, ds.interactions.item, ds.interactions.weight,
                                             strict=True)}
    assert weights[(0, 0)] == 13883 + 17
    assert weights[(1, 2)] == 121
    assert len(ds.interactions) == 5


def test_lastfm2k_artist_missing_from_catalogue_is_kept(tmp_path: Path) -> None:
    ua = LASTFM2K_FILES["user_artists.dat"] + "4\t77\t3\r\n"
    ds = load_lastfm2k(write_lastfm2k(tmp_path, user_artists__dat=ua))
    assert ds.item_ids.tolist() == [51, 52, 53, 54, 77]
    assert ds.item_names[-1] == "77"
    assert ds.stats["items_without_metadata"] == 1


@pytest.mark.parametrize(
    ("replace", "expected"),
    [
        ({"tags__dat": None}, ["tags.dat", "tags file not found"]),
        ({"user_artists__dat": ""}, ["user_artists.dat", "no data rows"]),
        ({"user_artists__dat": "userID\tartistID\tweight\n"}, ["user_artists.dat", "no data rows"]),
        (
            {"user_artists__dat": "userID\tartistID\twieght\n2\t51\t3\n"},
            ["user_artists.dat, column 'weight'", "columns found: 'userID', 'artistID', 'wieght'"],
        ),
        (
            {"user_artists__dat": "userID\tartistID\tweight\n2\t51\t3\n2\t52\tabc\n"},
            ["user_artists.dat, column 'weight', row 2: 'abc' is not a number"],
        ),
        (
            {"user_artists__dat": "userID\tartistID\tweight\n2\t51\t3\n2\t52\t4\n3\t51\t-3\n"},
            ["user_artists.dat, column 'weight', row 3: '-3' is negative"],
        ),
        (
            {"user_artists__dat": "userID\tartistID\tweight\n2\t51\t3\n2\t52\t\n"},
            ["user_artists.dat, column 'weight', row 2: empty value"],
        ),
        (
            {"user_artists__dat": "userID\tartistID\tweight\n2\t51\t3\n2\t52\tnan\n"},
            ["user_artists.dat, column 'weight', row 2: 'nan' is not a number"],
        ),
        (
            {"user_artists__dat": "userID\tartistID\tweight\n2\t51\t0\n"},
            ["user_artists.dat, column 'weight', row 1: '0' is zero"],
        ),
        (
            {"user_artists__dat": "userID\tartistID\tweight\n2\t51\t3\nx2\t52\t4\n"},
            ["user_artists.dat, column 'userID', row 2: 'x2' is not a number"],
        ),
        (
            {"user_artists__dat": "userID\tartistID\tweight\n2\t51\t3\n2\t52\n"},
            ["user_artists.dat, column 'weight', row 2: empty value"],
        ),
        (
            {"artists__dat": "id\tname\turl\tpictureURL\n51\tA\tu\tp\n52\tB\tu\tp\n51\tC\tu\tp\n53\tD\tu\tp\n"},
            ["artists.dat, column 'id', row 3: duplicate id 51"],
        ),
        (
            {"artists__dat": "id\tname\turl\tpictureURL\n51\tA\tu\tp\n52\tM\xf6rcheeba\tu\tp\n".encode("latin-1")},
            ["artists.dat, column 'name', row 2:", "byte 0xf6 at byte offset", "(line 3)", "not valid utf-8"],
        ),
        (
            {"user_friends__dat": "userID\tfriendID\n2\t3\n3\t2\n3\t999\n"},
            ["user_friends.dat, column 'friendID', row 3: 999 is not a known user id (not in user_artists.dat)"],
        ),
        (
            {"user_friends__dat": "userID\tfriendID\n2\t3\n5\t2\n"},
            ["user_friends.dat, column 'userID', row 2: 5 is not a known user id"],
        ),
        (
            {"user_taggedartists__dat": "userID\tartistID\ttagID\tday\tmonth\tyear\n2\t52\t1\t1\t4\t2009\n"
             "2\t52\t42\t1\t4\t2009\n"},
            ["user_taggedartists.dat, column 'tagID', row 2: 42 is not a known tag id (not in tags.dat)"],
        ),
        (
            {"user_taggedartists__dat": "userID\tartistID\ttagID\tday\tmonth\tyear\n9\t52\t1\t1\t4\t2009\n"},
            ["user_taggedartists.dat, column 'userID', row 1: 9 is not a known user id"],
        ),
    ],
)
def test_lastfm2k_bad_input(tmp_path: Path, replace: dict[str, str | bytes | None], expected: list[str]) -> None:
    folder = write_lastfm2k(tmp_path, **replace)
    for name, content in replace.items():
        if content is None:
            (folder / name.replace("__", ".")).unlink(missing_ok=True)
    with pytest.raises(DataError) as exc:
        load_lastfm2k(folder)
    for part in expected:
        assert part in message(exc), message(exc)


def test_encoding_error_deep_in_a_big_file(tmp_path: Path) -> None:
    """The reported row/offset are absolute, not relative to pandas' read buffer."""
    lines = [f"{i}\tartist {i}\tu\tp" for i in range(1, 200_001)]
    lines[150_000] = "150001\tbad \xe9 name\tu\tp"
    path = tmp_path / "artists.dat"
    path.write_bytes(("id\tname\turl\tpictureURL\n" + "\n".join(lines) + "\n").encode("latin-1"))
    with pytest.raises(DataError) as exc:
        read_table(path, columns=["id", "name"], role="artists")
    offset = path.read_bytes().index(b"\xe9")
    assert f"artists.dat, column 'name', row 150001: byte 0xe9 at byte offset {offset} (line 150002)" in message(exc)
    assert len(read_table(path, columns=["id", "name"], encoding="latin-1")) == 200_000


def test_resolve_lastfm2k_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENCORE_DATA_DIR", raising=False)
    explicit = write_lastfm2k(tmp_path / "explicit")
    data_dir = tmp_path / "data"
    env_dir = tmp_path / "env"
    assert resolve_lastfm2k_dir(Lastfm2kConfig(path=explicit), data_dir) == explicit
    with pytest.raises(DatasetNotFound, match=r"dataset\.path does not exist"):
        resolve_lastfm2k_dir(Lastfm2kConfig(path=tmp_path / "nope"), data_dir)

    # Nothing anywhere, download off: one message telling how to get it.
    monkeypatch.setenv("ENCORE_DATA_DIR", str(env_dir))
    with pytest.raises(DatasetNotFound) as exc:
        resolve_lastfm2k_dir(Lastfm2kConfig(download=False), data_dir)
    text = message(exc)
    assert "ENCORE_DATA_DIR" in text and str(data_dir / "hetrec2011-lastfm-2k") in text
    assert "python -m encore.components.download" in text and "download" in text
    assert isinstance(exc.value, DataError)

    # Download on: called with the URL and data_dir.
    calls = []
    monkeypatch.setattr(
        "encore.data.lastfm2k.download_lastfm2k",
        lambda url, dest: calls.append((url, dest)) or dest / "hetrec2011-lastfm-2k",
    )
    got = resolve_lastfm2k_dir(Lastfm2kConfig(url="file:///x.zip"), data_dir)
    assert calls == [("file:///x.zip", data_dir)] and got == data_dir / "hetrec2011-lastfm-2k"

    write_lastfm2k(data_dir / "hetrec2011-lastfm-2k")
    assert resolve_lastfm2k_dir(Lastfm2kConfig(), data_dir) == data_dir / "hetrec2011-lastfm-2k"
    write_lastfm2k(env_dir / "hetrec2011-lastfm-2k")
    assert resolve_lastfm2k_dir(Lastfm2kConfig(), data_dir) == env_dir / "hetrec2011-lastfm-2k"
    ds = load_dataset(Lastfm2kConfig(download=False), data_dir=data_dir)
    assert ds.files["interactions"] == env_dir / "hetrec2011-lastfm-2k" / "user_artists.dat"


@pytest.mark.realdata
def test_real_lastfm2k_documented_counts() -> None:
    assert REAL_LASTFM2K.is_dir(), (
        f"Last.fm 2K folder not found at {REAL_LASTFM2K}; set ENCORE_LASTFM2K_DIR to the unzipped "
        "hetrec2011-lastfm-2k folder (https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip)"
    )
    ds = load_lastfm2k(REAL_LASTFM2K)
    assert ds.n_users == 1892
    assert ds.n_items == 17632
    assert len(ds.interactions) == 92834
    assert ds.n_tags == 11946
    assert ds.stats["user_item_tags_rows_read"] == 186479
    # 1,538 assignments (390 artists) reference artists absent from artists.dat.
    assert ds.stats["user_item_tags_dropped_unknown_item"] == 1538
    assert len(ds.user_item_tags) == 186479 - 1538
    assert len(ds.social) == 25434
    assert ds.stats["duplicate_rows_aggregated"] == 0
    assert ds.stats["items_without_metadata"] == 0
    assert (ds.interactions.weight > 0).all()
    assert ds.item_names[ds.item_ids.tolist().index(707)] == "Metallica"
    assert "Röyksopp" in set(ds.item_names)
    assert ds.tag_names[0] == "metal"


TAGGING_EVENTS = (
    "userID\tartistID\ttagID\tday\tmonth\tyear\n"
    "2\t52\t1\t1\t4\t2009\n"
    "2\t52\t3\t15\t3\t2009\n"   # earlier tag of the same pair: the pair's date is 2009-03-15
    "2\t51\t2\t1\t1\t2011\n"
    "2\t51\t3\t1\t1\t1956\n"    # impossible date: dropped; the pair keeps its valid 2011 date
    "3\t53\t2\t1\t6\t1979\n"    # the pair's only date is impossible: the pair disappears
    "3\t52\t1\t2\t2\t2010\n"
    "3\t99\t2\t1\t5\t2009\n"    # artist 99 is not in artists.dat: dropped
    "4\t54\t2\t1\t6\t2010\n"
)


def test_lastfm2k_tagging_timeline_small(tmp_path: Path) -> None:
    folder = write_lastfm2k(tmp_path, user_taggedartists__dat=TAGGING_EVENTS)
    ds = load_lastfm2k(folder, interactions="tagging")
    frame = pd.DataFrame({"user": ds.user_ids[ds.interactions["user"]], "item": ds.item_ids[ds.interactions["item"]],
                          "weight": ds.interactions["weight"], "timestamp": ds.interactions["timestamp"]})
    got = {(int(u), int(i)): str(t.date()) for u, i, t in frame[["user", "item", "timestamp"]].itertuples(index=False)}
    assert got == {(2, 51): "2011-01-01", (2, 52): "2009-03-15", (3, 52): "2010-02-02", (4, 54): "2010-06-01"}
    assert (frame["weight"] == 1).all()
    assert ds.stats["tagging_events_dropped_impossible_date"] == 2
    assert ds.stats["tagging_events_dropped_unknown_item"] == 1
    assert ds.stats["tagging_pairs"] == 4
    assert "interactions" not in ds.files  # user_artists.dat is not read
    # Tag rows keep their own dates (for the time split's leakage cut), impossible ones dropped.
    assert sorted(ds.user_item_tags["timestamp"].dt.year.tolist()) == [2009, 2009, 2010, 2010, 2011]


def test_lastfm2k_tagging_bad_date(tmp_path: Path) -> None:
    events = "userID\tartistID\ttagID\tday\tmonth\tyear\n2\t52\t1\t1\t4\t2009\n2\t51\t1\t31\t13\t2009\n"
    folder = write_lastfm2k(tmp_path, user_taggedartists__dat=events)
    with pytest.raises(DataError, match=r"user_taggedartists.dat.*row 2.*2009-13-31 is not a calendar date"):
        load_lastfm2k(folder, interactions="tagging")


def test_tagging_time_split_cuts_tag_rows_at_the_stage_cut(tmp_path: Path) -> None:
    # Pair (2, 52) is dated 2009-03-15 (base), but it has a tag given 2012-01-01, in the test
    # window: that row must reach neither base nor train tag features.
    from encore.config.experiment import TimeSplit
    from encore.evaluation.splits import split_pair_side_data, time_split

    events = TAGGING_EVENTS + "2\t52\t2\t1\t1\t2012\n3\t52\t3\t1\t8\t2010\n"
    ds = load_lastfm2k(write_lastfm2k(tmp_path, user_taggedartists__dat=events), interactions="tagging")
    split = time_split(ds.interactions, TimeSplit(target_start=pd.Timestamp("2010-01-01").to_pydatetime(),
                                                  test_start=pd.Timestamp("2010-12-01").to_pydatetime()))
    base, train = split_pair_side_data(ds.user_item_tags, split, ds.n_items)
    assert (train["timestamp"] < pd.Timestamp("2010-12-01")).all()
    assert (base["timestamp"] < pd.Timestamp("2010-01-01")).all()
    # Base keeps user 2's two 2009 tags on artist 52; train adds user 3's two 2010 tags on 52
    # and user 4's; the 2011 pair (2, 51) is test; the 2012 tag of the base pair is cut from both.
    assert len(base) == 2 and len(train) == 5
    user2, artist52 = ds.user_ids.tolist().index(2), ds.item_ids.tolist().index(52)
    tag2 = 1  # tags.dat ids 1, 2, 3 -> codes 0, 1, 2
    for side in (base, train):
        assert not ((side["user"] == user2) & (side["item"] == artist52) & (side["tag"] == tag2)).any()


@pytest.mark.realdata
def test_real_lastfm2k_tagging_timeline() -> None:
    assert REAL_LASTFM2K.is_dir(), f"Last.fm 2K folder not found at {REAL_LASTFM2K}; set ENCORE_LASTFM2K_DIR"
    ds = load_lastfm2k(REAL_LASTFM2K, interactions="tagging")
    # 5 tag events (4 pairs) are dated 1956-1979; 1,538 name artists missing from artists.dat.
    assert ds.stats["tagging_events_dropped_impossible_date"] == 5
    assert ds.stats["tagging_events_dropped_unknown_item"] == 1538
    assert len(ds.interactions) == ds.stats["tagging_pairs"] == 70295
    assert ds.interactions["timestamp"].min() >= pd.Timestamp("2005-01-01")
    assert ds.interactions["timestamp"].max() == pd.Timestamp("2011-05-09")
    assert (ds.interactions["weight"] == 1).all()
    # First date per pair, recomputed independently from the raw file.
    raw = pd.read_csv(REAL_LASTFM2K / "user_taggedartists.dat", sep="\t")
    raw["date"] = pd.to_datetime(raw[["year", "month", "day"]])
    raw = raw[(raw["date"] >= "2005-01-01") & raw["artistID"].isin(ds.item_ids)]
    first = raw.groupby(["userID", "artistID"])["date"].min().astype("datetime64[ns]")
    got = pd.Series(ds.interactions["timestamp"].to_numpy(),
                    index=pd.MultiIndex.from_arrays([ds.user_ids[ds.interactions["user"]],
                                                     ds.item_ids[ds.interactions["item"]]]))
    pd.testing.assert_series_equal(got.sort_index(), first.sort_index(), check_names=False, check_index_type=False)


# --------------------------------------------------------------------------- Last.fm 1K
LASTFM1K = (
    "user_000001\t2009-05-04T23:08:57Z\tf1b1cf71-bd35-4e99-8624-24a6e15f133a\tDeep Dish\t\tFuck Me Im Famous\n"
    "user_000001\t2009-05-04T13:54:10Z\ta7f7df4a-77d8-4f12-8acd-5c60c93f4de8\t坂本龍一\t\tComposition 0919\n"
    "user_000001\t2009-05-05T10:00:00Z\tf1b1cf71-bd35-4e99-8624-24a6e15f133a\tDeep Dish\tt-1\tFlashdance\n"
    "user_000002\t2009-05-03T09:00:00Z\t\tUnknown Band\t\tSong \"A\"\n"
    "user_000002\t2009-05-03T08:00:00Z\t\tUnknown Band\t\tSong \"A\"\n"
    "user_000001\t2009-05-01T08:00:00Z\tf1b1cf71-bd35-4e99-8624-24a6e15f133a\tDeep Dish\tt-1\tFlashdance\n"
)


def test_lastfm1k_artists(tmp_path: Path) -> None:
    path = tmp_path / "userid-timestamp-artid-artname-traid-traname.tsv"
    path.write_text(LASTFM1K, encoding="utf-8")
    ds = load_lastfm1k(path)
    assert ds.user_ids.tolist() == ["user_000001", "user_000002"]
    assert ds.item_ids.tolist() == [
        "Unknown Band", "a7f7df4a-77d8-4f12-8acd-5c60c93f4de8", "f1b1cf71-bd35-4e99-8624-24a6e15f133a",
    ]
    assert ds.item_names.tolist() == ["Unknown Band", "坂本龍一", "Deep Dish"]
    got = ds.interactions.set_index(["user", "item"])
    assert got.loc[(0, 2), "weight"] == 3  # three plays of Deep Dish
    assert got.loc[(0, 2), "timestamp"] == pd.Timestamp("2009-05-05 10:00:00")  # the last play
    assert got.loc[(1, 0), "weight"] == 2
    assert ds.interactions.timestamp.dtype == "datetime64[ns]"
    assert ds.stats["play_events_aggregated"] == 3
    assert ds.item_tags is None and ds.tag_names is None


def test_lastfm1k_tracks_and_max_rows(tmp_path: Path) -> None:
    path = tmp_path / "events.tsv"
    path.write_text(LASTFM1K, encoding="utf-8")
    ds = load_lastfm1k(path, item="track")
    assert ds.item_ids.tolist() == [
        "Deep Dish - Fuck Me Im Famous", "Unknown Band - Song \"A\"", "t-1", "坂本龍一 - Composition 0919",
    ]
    assert ds.item_names[2] == "Deep Dish - Flashdance"
    assert ds.interactions.weight.sum() == 6
    assert len(load_lastfm1k(path, max_rows=2).interactions) == 2


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "user_000003\t2009-13-45T99:00:00Z\tx\tA\t\tT\n",
            "events.tsv, column 'timestamp', row 7: '2009-13-45T99:00:00Z' is not a timestamp",
        ),
        ("user_000003\t\tx\tA\t\tT\n", "events.tsv, column 'timestamp', row 7: empty timestamp"),
        ("\t2009-05-04T23:08:57Z\tx\tA\t\tT\n", "events.tsv, column 'userid', row 7: empty id"),
        ("user_000003\t2009-05-04T23:08:57Z\t\t\t\tT\n", "events.tsv, column 'artist_name', row 7: neither"),
    ],
)
def test_lastfm1k_bad_input(tmp_path: Path, line: str, expected: str) -> None:
    path = tmp_path / "events.tsv"
    path.write_text(LASTFM1K + line, encoding="utf-8")
    with pytest.raises(DataError) as exc:
        load_lastfm1k(path)
    assert expected in message(exc)


def test_lastfm1k_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"events.tsv: listening events file not found"):
        load_lastfm1k(tmp_path / "events.tsv")


# --------------------------------------------------------------------------- Last.fm 360K
LASTFM360K = (
    "00000c289a1829a808ac09c00daf10bc3c4e223b\t3bd73256-3905-4f3a-97e2-8b341527f805\tbetty blowtorch\t2137\n"
    "00000c289a1829a808ac09c00daf10bc3c4e223b\tf2fb0ff0-5679-42ec-a55c-15109ce6e320\tdie Ärzte\t1099\n"
    "00000c289a1829a808ac09c00daf10bc3c4e223b\t\tsome unknown\t12\n"
    "00001411dc427966b17297bf4d69e7e193135d89\t3bd73256-3905-4f3a-97e2-8b341527f805\tBetty Blowtorch\t5\n"
    "00001411dc427966b17297bf4d69e7e193135d89\t3bd73256-3905-4f3a-97e2-8b341527f805\tbetty blowtorch.\t3\n"
    "00001411dc427966b17297bf4d69e7e193135d89\tf2fb0ff0-5679-42ec-a55c-15109ce6e320\tdie Ärzte\t0\n"
)


def test_lastfm360k(tmp_path: Path) -> None:
    path = tmp_path / "usersha1-artmbid-artname-plays.tsv"
    path.write_text(LASTFM360K, encoding="utf-8")
    ds = load_lastfm360k(path)
    assert ds.n_users == 2 and ds.n_items == 3
    assert ds.item_names.tolist() == ["betty blowtorch", "die Ärzte", "some unknown"]
    got = ds.interactions.set_index(["user", "item"]).weight
    assert got[(1, 0)] == 8  # same mbid twice for one user: summed
    assert (1, 1) not in got.index  # 0 plays: dropped
    assert ds.stats["zero_play_rows_dropped"] == 1
    assert ds.stats["duplicate_rows_aggregated"] == 1
    assert not ds.has_timestamps


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("u\tm\tn\t-4\n", "plays.tsv, column 'plays', row 7: '-4' is negative"),
        ("u\tm\tn\tlots\n", "plays.tsv, column 'plays', row 7: 'lots' is not a number"),
        ("u\t\t\t4\n", "plays.tsv, column 'artist_name', row 7: neither artist_mbid nor artist_name"),
    ],
)
def test_lastfm360k_bad_input(tmp_path: Path, line: str, expected: str) -> None:
    path = tmp_path / "plays.tsv"
    path.write_text(LASTFM360K + line, encoding="utf-8")
    with pytest.raises(DataError) as exc:
        load_lastfm360k(path)
    assert expected in message(exc)


# --------------------------------------------------------------------------- Yandex
def write_yandex(tmp_path: Path, *, events: pa.Table | None = None, tracks: pa.Table | None = None,
                 names: pa.Table | None = None) -> tuple[Path, Path, Path]:
    ts = pa.array(
        pd.to_datetime(["2023-01-01 10:00", "2023-01-02 10:00", "2023-01-01 11:00", "2023-01-03 09:00",
                        "2023-01-04 12:00"]).tz_localize("UTC"),
        type=pa.timestamp("us", tz="UTC"),
    )
    events = events if events is not None else pa.table(
        {"user_id": [10, 10, 10, 20, 20], "track_id": [100, 100, 200, 100, 300], "started_at": ts}
    )
    tracks = tracks if tracks is not None else pa.table(
        {
            "track_id": [100, 200, 300, 400],
            "albums": [[1], [2], None, [3]],
            "artists": [[7], [7, 8], [9], [9]],
            "genres": [[12, 13], [12], [], [14]],
        }
    )
    names = names if names is not None else pa.table(
        {
            "id": [100, 200, 7, 8, 12, 13, 1],
            "type": ["track", "track", "artist", "artist", "genre", "genre", "album"],
            "name": ["Song A", "Song B", "Artist Seven", "Artist Eight", "rock", "pop", "Album One"],
        }
    )
    paths = tmp_path / "interactions.parquet", tmp_path / "tracks.parquet", tmp_path / "catalog_names.parquet"
    for table, path in zip((events, tracks, names), paths, strict=True):
        pq.write_table(table, path)
    return paths


def test_yandex(tmp_path: Path) -> None:
    events, tracks, names = write_yandex(tmp_path)
    ds = load_yandex(events, tracks, names)
    assert ds.user_ids.tolist() == [10, 20] and ds.item_ids.tolist() == [100, 200, 300]
    assert ds.item_names.tolist() == ["Song A", "Song B", "300"]
    got = ds.interactions.set_index(["user", "item"])
    assert got.loc[(0, 0), "weight"] == 2  # two listens
    assert got.loc[(0, 0), "timestamp"] == pd.Timestamp("2023-01-02 10:00")
    assert ds.stats["listen_events_aggregated"] == 1
    assert ds.stats["tracks_without_interactions"] == 1  # track 400
    tags = dict(zip(ds.tag_names.tolist(), range(ds.n_tags), strict=True))
    assert set(tags) == {"Album One", "album:2", "Artist Seven", "Artist Eight", "artist:9", "rock", "pop"}
    by_item = ds.item_tags.groupby("item")["tag"].apply(lambda s: sorted(ds.tag_names[s]))
    assert by_item[0] == ["Album One", "Artist Seven", "pop", "rock"]
    assert by_item[2] == ["artist:9"]
    assert (ds.item_tags.weight == 1).all()
    assert set(ds.files) == {"interactions", "tracks", "catalog_names"}
    # Without names, tags are the namespaced ids.
    bare = load_yandex(events, tracks)
    assert "genre:12" in set(bare.tag_names) and bare.item_names is None


def test_yandex_bad_input(tmp_path: Path) -> None:
    bad_ts = pa.table(
        {"user_id": [1, 2, 3], "track_id": [100, 100, 200], "started_at": ["2023-01-01", "2023-01-02", "later"]}
    )
    events, tracks, names = write_yandex(tmp_path, events=bad_ts)
    with pytest.raises(DataError) as exc:
        load_yandex(events, tracks, names)
    assert "interactions.parquet, column 'started_at', row 3: 'later' is not a timestamp" in message(exc)

    no_col = pa.table({"user": [1], "track_id": [100], "started_at": ["2023-01-01"]})
    events, tracks, names = write_yandex(tmp_path, events=no_col)
    with pytest.raises(DataError) as exc:
        load_yandex(events, tracks, names)
    assert "interactions.parquet, column 'user_id': missing" in message(exc) and "'user'" in message(exc)

    bad_genre = pa.table({"track_id": [100, 200, 300], "genres": [["1"], ["2", "x"], []]})
    events, tracks, names = write_yandex(tmp_path, tracks=bad_genre)
    with pytest.raises(DataError) as exc:
        load_yandex(events, tracks, names)
    assert "tracks.parquet, column 'genres', row 2: 'x' is not a number" in message(exc)

    bad_type = pa.table({"id": [100, 7], "type": ["track", "playlist"], "name": ["a", "b"]})
    events, tracks, names = write_yandex(tmp_path, names=bad_type)
    with pytest.raises(DataError) as exc:
        load_yandex(events, tracks, names)
    assert "catalog_names.parquet, column 'type', row 2: 'playlist' is not one of" in message(exc)

    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty.parquet: not a readable Parquet tracks file"):
        load_yandex(events, tmp_path / "empty.parquet")


# --------------------------------------------------------------------------- tabular
def test_tabular_csv_counts_and_features(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "plays.csv").write_text(
        "listener,song,when\n"
        "u1,s10,1600000000\n"
        "u1,s9,1600000100\n"
        "u2,s10,1600000200\n"
        "u1,s10,1600000300\n",
        encoding="utf-8",
    )
    (tmp_path / "features.csv").write_text("song,genre\ns10,rock\ns9,\"jazz, modal\"\ns10,pop\ns10,rock\n")
    cfg = TabularConfig(
        interactions=tmp_path / "plays.csv",
        columns=ColumnMapping(user="listener", item="song", timestamp="when"),
        item_features=tmp_path / "features.csv",
        item_features_columns=FeatureColumnMapping(item="song", feature="genre"),
    )
    with caplog.at_level(logging.INFO):
        ds = load_dataset(cfg, data_dir=tmp_path)
    assert ds.name == "plays"
    assert ds.item_ids.tolist() == ["s10", "s9"]
    got = ds.interactions.set_index(["user", "item"])
    assert got.loc[(0, 0), "weight"] == 2  # unweighted rows count
    assert got.loc[(0, 0), "timestamp"] == pd.Timestamp(1600000300, unit="s")
    assert ds.stats["duplicate_rows_aggregated"] == 1
    assert "aggregated 1 duplicate (user, item) rows of plays.csv" in caplog.text
    assert ds.tag_names.tolist() == ["jazz, modal", "pop", "rock"]
    assert ds.item_tags.to_dict("list") == {"item": [0, 0, 1], "tag": [1, 2, 0], "weight": [1.0, 1.0, 1.0]}
    assert ds.stats["item_tags_duplicates_dropped"] == 1


def test_tabular_parquet_weights_and_int_ids(tmp_path: Path) -> None:
    pd.DataFrame(
        {"u": ["10", "9", "10"], "i": ["007", "7", "007"], "w": [1.5, 2.0, 0.5],
         "t": ["2020-01-01T00:00:00Z", "2020-01-02", "2020-01-03T12:00:00+02:00"]}
    ).to_parquet(tmp_path / "x.parquet")
    ds = load_tabular(tmp_path / "x.parquet", ColumnMapping(user="u", item="i", weight="w", timestamp="t"))
    assert ds.user_ids.tolist() == [9, 10]  # canonical integers sort numerically
    assert ds.item_ids.tolist() == ["007", "7"]  # "007" != "7": kept as strings
    got = ds.interactions.set_index(["user", "item"])
    assert got.loc[(1, 0), "weight"] == 2.0
    assert got.loc[(1, 0), "timestamp"] == pd.Timestamp("2020-01-03 10:00")  # UTC


@pytest.mark.parametrize(
    ("plays", "features", "expected"),
    [
        ("user,item,weight\n1,2,3\n1,3,x\n", None, "plays.csv, column 'weight', row 2: 'x' is not a number"),
        ("user,item,weight\n1,2,3\n1,3,-1\n", None, "plays.csv, column 'weight', row 2: '-1' is negative"),
        ("user,item,weight\n1,2,3\n,3,1\n", None, "plays.csv, column 'user', row 2: empty id"),
        ("usr,item,weight\n1,2,3\n", None, "plays.csv, column 'user': missing in the interactions file; columns found: "
                                           "'usr', 'item', 'weight'"),
        ("user,item,weight\n1,2,3\n", "item,feature\n2,rock\n5,pop\n",
         "features.csv, column 'item', row 2: 5 is not a known item id (not in plays.csv)"),
        ("user,item,weight\n1,2,3\n", "item,feature\n2,rock\n2,\n", "features.csv, column 'feature', row 2: empty id"),
        ("user,item,weight\n1,2,3\n", "item,tag\n2,rock\n", "features.csv, column 'feature': missing"),
    ],
)
def test_tabular_bad_input(tmp_path: Path, plays: str, features: str | None, expected: str) -> None:
    (tmp_path / "plays.csv").write_text(plays)
    if features is not None:
        (tmp_path / "features.csv").write_text(features)
    with pytest.raises(DataError) as exc:
        load_tabular(
            tmp_path / "plays.csv",
            ColumnMapping(weight="weight"),
            item_features=tmp_path / "features.csv" if features is not None else None,
        )
    assert expected in message(exc)


def test_tabular_bad_timestamp_and_encoding(tmp_path: Path) -> None:
    (tmp_path / "plays.csv").write_text("user,item,ts\n1,2,2020-01-01\n1,3,01/02/2020\n")
    with pytest.raises(DataError) as exc:
        load_tabular(tmp_path / "plays.csv", ColumnMapping(timestamp="ts"))
    assert "plays.csv, column 'ts', row 2: '01/02/2020' is not a timestamp" in message(exc)

    (tmp_path / "plays.tsv").write_bytes(b"user\titem\n1\t2\n1\t\xe9t\xe9\n")
    with pytest.raises(DataError) as exc:
        load_tabular(tmp_path / "plays.tsv", ColumnMapping(), sep="\t")
    assert "plays.tsv, column 'item', row 2: byte 0xe9 at byte offset" in message(exc)


def test_tabular_release_dates_join_the_catalogue(tmp_path: Path) -> None:
    # s8 is released but nobody has played it yet: an upcoming release, in the catalogue with its
    # date and its genre; s9 is played but has no date (NaT). Dates are read as timestamps are.
    (tmp_path / "plays.csv").write_text("user,item\nu1,s10\nu2,s9\n")
    (tmp_path / "releases.csv").write_text("song,out\ns10,2020-01-01\ns8,2021-01-01T00:00:00Z\n")
    (tmp_path / "features.csv").write_text("item,feature\ns8,rock\ns10,pop\n")
    ds = load_dataset(TabularConfig(interactions=tmp_path / "plays.csv", item_features=tmp_path / "features.csv",
                                    item_releases=tmp_path / "releases.csv",
                                    item_releases_columns=ReleaseColumnMapping(item="song", release="out")),
                      data_dir=tmp_path)
    assert ds.item_ids.tolist() == ["s10", "s8", "s9"]
    np.testing.assert_array_equal(ds.item_release, np.array(["2020-01-01", "2021-01-01", "NaT"],
                                                            dtype="datetime64[ns]"))
    assert ds.item_tags["item"].tolist() == [0, 1]  # s8's genre is kept: it is in the catalogue
    assert ds.stats["items_without_metadata"] == 1  # s9: played, no release date


@pytest.mark.parametrize(("releases", "expected"), [
    ("item,release\n2,2020-01-01\n3,01/02/2020\n",
     "releases.csv, column 'release', row 2: '01/02/2020' is not a timestamp"),
    ("item,release\n2,2020-01-01\n2,2020-02-01\n", "releases.csv, column 'item', row 2: duplicate id 2"),
    ("item,release\n2,\n", "releases.csv, column 'release', row 1: empty timestamp"),
    ("item,date\n2,2020-01-01\n", "releases.csv, column 'release': missing"),
])
def test_tabular_bad_release_dates(tmp_path: Path, releases: str, expected: str) -> None:
    (tmp_path / "plays.csv").write_text("user,item\n1,2\n")
    (tmp_path / "releases.csv").write_text(releases)
    with pytest.raises(DataError) as exc:
        load_tabular(tmp_path / "plays.csv", ColumnMapping(), item_releases=tmp_path / "releases.csv")
    assert expected in message(exc)
