"""HetRec 2011 Last.fm 2K: 1,892 users, 17,632 artists, play counts, tags and friends.

Files (tab-separated, with a header row):

============================  ==========================================  ==================
file                          columns                                      becomes
============================  ==========================================  ==================
user_artists.dat              userID artistID weight                       interactions
artists.dat                   id name url pictureURL                       items, item_names
tags.dat                      tagID tagValue                               tag_names
user_taggedartists.dat        userID artistID tagID day month year         user_item_tags
user_friends.dat              userID friendID                              social (as given;
                                                                           both directions)
============================  ==========================================  ==================

What the real files contain (checked against the official archive):

* All files are UTF-8. artists.dat has real non-Latin names (Hebrew, Cyrillic ...);
  tags.dat is valid UTF-8 but 8 tag names already hold U+FFFD replacement characters
  (``rock fran\\ufffdais``) from a lossy conversion upstream - kept as they are.
* user_taggedartists.dat has 1,538 tag assignments (390 distinct artists) whose artist is
  not in artists.dat. The artist catalogue is artists.dat, so those rows are dropped and
  counted in ``stats["user_item_tags_dropped_unknown_item"]`` (184,941 of 186,479 kept).
  Every other reference (users, tags, friends, listened artists) resolves; an unknown one
  is a DataError naming file, column and row.
* There are no duplicate rows; if a copy had any, duplicate (user, artist) rows would be
  aggregated (weights summed) and counted.

Items are all artists of artists.dat (all 17,632 are listened to), plus any artist of
user_artists.dat missing from it (none in the real data; kept, named by its id).

The tagging timeline (``dataset.interactions: tagging``)
-------------------------------------------------------
user_artists.dat has no dates, but every tag assignment carries day/month/year. With
``interactions: tagging`` the interactions are the tagged (user, artist) pairs instead of the
plays, each **at its first tagging date, weight 1** (binary: a user tagging an artist several
times, or with several tags, is one interaction; the number of tags mostly counts how verbose a
tagger is, not how much they like the artist). Rules, all counted in ``stats``:

* **Impossible dates.** The data was collected 2005-2011, yet 5 tag events (4 pairs) are dated
  1956-1979. Tag events dated before ``dataset.tagging_min_date`` (2005-01-01) are dropped
  (``tagging_events_dropped_impossible_date``), so a pair whose only dates are impossible
  disappears and a pair with a valid later date keeps that one. A date that is not a calendar
  date (month 13) is a DataError naming the row.
* Tag events on artists missing from artists.dat are dropped from the interactions too
  (``tagging_events_dropped_unknown_item``), as from the tag side table.
* Users are those who tagged (1,892 in user_artists.dat, fewer tag): friend links to users
  without a tagging event are dropped and counted (``social_dropped_unknown_*``).
* **Leak-free tag features.** The user tag rows keep their own date (``timestamp``), so a time
  split also removes every tag event dated at or after its stage's cut
  (:func:`encore.evaluation.splits.split_pair_side_data`): a training pair's later tags — given
  in the test window — never feed item features.
"""

from __future__ import annotations

import logging
import os
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from encore.data.dataset import DataError, MusicDataset
from encore.data.fetching import LASTFM2K_DIRNAME, DownloadError, download_lastfm2k
from encore.data.parsing import (
    SideTable,
    build_dataset,
    check_positive_weights,
    check_unique,
    read_table,
    to_id_column,
)

if TYPE_CHECKING:  # the config declares this loader (dataset_config imports it): types only here
    from encore.data.dataset_config import Lastfm2kConfig

log = logging.getLogger(__name__)

FILES = {
    "interactions": "user_artists.dat",
    "artists": "artists.dat",
    "tags": "tags.dat",
    "user_tags": "user_taggedartists.dat",
    "friends": "user_friends.dat",
}
"""Role -> file name inside the dataset folder."""

ENV_DATA_DIR = "ENCORE_DATA_DIR"


class DatasetNotFound(DataError):
    """The dataset folder is nowhere to be found and downloading is off."""


def _candidate_dirs(data_dir: Path) -> list[Path]:
    env = os.environ.get(ENV_DATA_DIR)
    candidates = ([Path(env) / LASTFM2K_DIRNAME] if env else []) + [Path(data_dir) / LASTFM2K_DIRNAME]
    return list(dict.fromkeys(candidates))  # ENCORE_DATA_DIR usually is data_dir too: each folder once


def find_lastfm2k_dir(cfg: Lastfm2kConfig, data_dir: Path) -> Path | None:
    """The Last.fm 2K folder that would be read (``cfg.path``, else the first existing candidate
    folder), or None when there is none yet; never downloads."""
    if cfg.path is not None:
        return Path(cfg.path)
    return next((candidate for candidate in _candidate_dirs(data_dir) if candidate.is_dir()), None)


def lastfm2k_files(cfg: Lastfm2kConfig, data_dir: Path) -> dict[str, Path]:
    """The files :func:`load_lastfm2k` would read, by role (none while the folder is not found)."""
    folder = find_lastfm2k_dir(cfg, data_dir)
    return {} if folder is None else {role: folder / name for role, name in FILES.items()}


def resolve_lastfm2k_dir(cfg: Lastfm2kConfig, data_dir: Path) -> Path:
    """Find the Last.fm 2K folder, downloading it if allowed.

    Order: ``cfg.path``; ``$ENCORE_DATA_DIR/hetrec2011-lastfm-2k``;
    ``<data_dir>/hetrec2011-lastfm-2k``; else download into ``data_dir`` if
    ``cfg.download``; else raise :class:`DatasetNotFound` saying how to get it.
    """
    if cfg.path is not None and not Path(cfg.path).is_dir():
        raise DatasetNotFound(
            cfg.path, "dataset.path does not exist or is not a folder (it must hold user_artists.dat etc.)"
        )
    found = find_lastfm2k_dir(cfg, data_dir)
    if found is not None:
        return found
    candidates = _candidate_dirs(data_dir)
    how = (f"get it by setting {ENV_DATA_DIR} to a folder holding {LASTFM2K_DIRNAME}/, by unzipping "
           f"{cfg.url} into {Path(data_dir) / LASTFM2K_DIRNAME}, or by running `python -m encore.components.download`")
    looked = ", ".join(map(str, candidates))
    if cfg.download:
        log.info("Last.fm 2K not found in %s; downloading %s", looked, cfg.url)
        try:
            return download_lastfm2k(cfg.url, Path(data_dir))
        except DownloadError as exc:
            raise DatasetNotFound(LASTFM2K_DIRNAME, f"not found (looked in {looked}) and {exc}; {how}") from exc
    raise DatasetNotFound(LASTFM2K_DIRNAME, f"not found (looked in {looked}); {how} (dataset.download is false)")


def tag_event_dates(uta: pd.DataFrame, *, file: str) -> pd.Series:
    """Calendar dates of the tag events (day, month, year columns); a non-date is a DataError."""
    parts = {name: to_id_column(uta, column, file=file, integer=True)
             for name, column in (("year", "year"), ("month", "month"), ("day", "day"))}
    dates = pd.to_datetime(pd.DataFrame(parts), errors="coerce")
    if dates.isna().any():
        pos = int(np.flatnonzero(dates.isna().to_numpy())[0])
        raise DataError(file, f"{parts['year'].iloc[pos]}-{parts['month'].iloc[pos]}-{parts['day'].iloc[pos]} "
                        "is not a calendar date", column="day/month/year", row=int(uta.index[pos]) + 1)
    return dates


def tagging_interactions(uta: pd.DataFrame, dates: pd.Series, known_artists: pd.Index, *, min_date: date,
                         file: str, stats: dict[str, int]) -> tuple[pd.DataFrame, np.ndarray]:
    """First valid tagging date per (user, artist) as interactions (weight 1), and the mask of
    tag events kept (valid date, known artist). See the module docstring for the rules."""
    users = to_id_column(uta, "userID", file=file, integer=True)
    items = to_id_column(uta, "artistID", file=file, integer=True)
    impossible = (dates < pd.Timestamp(min_date)).to_numpy()
    unknown = ~items.isin(known_artists).to_numpy()
    stats["tagging_events_dropped_impossible_date"] = int(impossible.sum())
    stats["tagging_events_dropped_unknown_item"] = int((unknown & ~impossible).sum())
    if impossible.any():
        log.warning("%s: dropped %d tag events dated before %s (impossible for data collected 2005-2011; "
                    "earliest %s)", file, int(impossible.sum()), min_date, dates[impossible].min().date())
    keep = ~(impossible | unknown)
    events = pd.DataFrame({"user": users[keep].to_numpy(), "item": items[keep].to_numpy(),
                           "timestamp": dates[keep].to_numpy()})
    # One row per pair at its first date: a sorted groupby-min, vectorised.
    first = events.groupby(["user", "item"], sort=True, as_index=False)["timestamp"].min()
    first["weight"] = np.float32(1.0)
    stats["tagging_pairs"] = len(first)
    return first[["user", "item", "weight", "timestamp"]], keep


def load_lastfm2k(folder: str | Path, *, interactions: Literal["plays", "tagging"] = "plays",
                  tagging_min_date: date = date(2005, 1, 1)) -> MusicDataset:
    """Load the HetRec 2011 Last.fm 2K folder (see the module docstring for the rules).

    ``interactions="tagging"``: the tagging timeline instead of the play counts."""
    folder = Path(folder)
    paths = {role: folder / name for role, name in FILES.items()}
    tagging = interactions == "tagging"
    stats: dict[str, int] = {}
    if tagging:
        del paths["interactions"]  # user_artists.dat is not read, so it is not among the files recorded

    # Artist catalogue (only id and name matter; url/pictureURL are not needed).
    artists = read_table(paths["artists"], columns=["id", "name"], role="artists")
    artist_ids = to_id_column(artists, "id", file=FILES["artists"], integer=True)
    check_unique(artists.assign(id=artist_ids), "id", file=FILES["artists"])
    names = pd.Series(artists["name"].to_numpy(object), index=pd.Index(artist_ids.to_numpy()))

    tags = read_table(paths["tags"], columns=["tagID", "tagValue"], role="tags")
    tag_ids = to_id_column(tags, "tagID", file=FILES["tags"], integer=True)
    check_unique(tags.assign(tagID=tag_ids), "tagID", file=FILES["tags"])
    tag_catalog = pd.Series(tags["tagValue"].to_numpy(object), index=pd.Index(tag_ids.to_numpy()))

    columns = ["userID", "artistID", "tagID", *(("day", "month", "year") if tagging else ())]
    uta = read_table(paths["user_tags"], columns=columns, role="user tag assignments")
    file = FILES["user_tags"]
    tag_rows = pd.DataFrame(
        {
            "user": to_id_column(uta, "userID", file=file, integer=True),
            "item": to_id_column(uta, "artistID", file=file, integer=True),
            "tag": to_id_column(uta, "tagID", file=file, integer=True),
        }
    )
    if tagging:
        dates = tag_event_dates(uta, file=file)
        events, keep = tagging_interactions(uta, dates, names.index, min_date=tagging_min_date, file=file,
                                            stats=stats)
        # The tag rows keep their date, so a time split can drop those after its cuts (leakage).
        tag_rows = tag_rows.assign(timestamp=dates.to_numpy())[keep]
        interactions_frame, interactions_file = events, file
    else:
        # Interactions: user, artist, play count.
        ua = read_table(paths["interactions"], columns=["userID", "artistID", "weight"], role="interactions")
        interactions_file = FILES["interactions"]
        interactions_frame = pd.DataFrame(
            {
                "user": to_id_column(ua, "userID", file=interactions_file, integer=True),
                "item": to_id_column(ua, "artistID", file=interactions_file, integer=True),
                "weight": check_positive_weights(ua, "weight", file=interactions_file),
            }
        )
    user_item_tags = SideTable(
        tag_rows,
        file=file,
        source_columns={"user": "userID", "item": "artistID", "tag": "tagID"},
        # The real file tags 390 artists that artists.dat lacks (1,538 rows): drop, count.
        drop_unknown={"item"},
    )

    uf = read_table(paths["friends"], columns=["userID", "friendID"], role="friends")
    file = FILES["friends"]
    social = SideTable(
        pd.DataFrame(
            {
                "user": to_id_column(uf, "userID", file=file, integer=True),
                "friend": to_id_column(uf, "friendID", file=file, integer=True),
            }
        ),
        file=file,
        source_columns={"user": "userID", "friend": "friendID"},
        # On the tagging timeline some users never tagged: their links are dropped, counted.
        drop_unknown={"user", "friend"} if tagging else set(),
    )

    return build_dataset(
        "lastfm2k_tagging" if tagging else "lastfm2k",
        interactions_frame,
        interactions_file=interactions_file,
        item_catalog=names.index,
        item_catalog_file=FILES["artists"],
        item_names=names,
        tag_catalog=tag_catalog,
        tag_catalog_file=FILES["tags"],
        user_item_tags=user_item_tags,
        social=social,
        files=paths,
        stats=stats,
    )
