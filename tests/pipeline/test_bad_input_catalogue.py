"""The bad-input catalogue (issue #9): every kind of bad input Encore handles, run as a user runs it.

Each :class:`Case` is one entry of :data:`CASES`: the files it writes, the experiment file,
the extra command-line arguments and the exact message expected. One parametrised test runs
each case through the pipeline CLI in-process (``encore.pipeline.runner.main(argv)``, the
code behind ``scripts/pipeline/run.sh``) and checks the three promises made for bad input:

1. exit status 2;
2. the exact error on stderr - one ``error: ...`` block, the full text compared (paths under
   the test's folder written as ``{tmp}``), with no traceback anywhere on stderr;
3. nothing half-written: the output folder holds exactly what it held before the run (no
   ``.<component>-<fp>.tmp-*`` folder, no component folder with a ``_SUCCESS.json`` marker),
   and a complete output of an earlier good run is left byte for byte as it was.

Why a catalogue rather than more loader unit tests: the loader tests call the readers
directly; here the same inputs go through config loading, the runner, MLflow tracking and
the atomic output folders, so a message that is right in the loader but lost, wrapped
twice or accompanied by a traceback on the way to the user fails here.

The Last.fm 2K cases run on a small consistent copy of the real files (the first 20 users,
their artists, tags, tag assignments and friendships, raw bytes and line endings kept),
written into the test's folder and then broken one way each. The environment points the
output folder, the data folder and the MLflow store into temporary folders, and the
repository's ``.env`` is switched off, so a developer's settings cannot change the result.

Adding a case is one entry in :data:`CASES`. A case that Encore handles badly (a
traceback, or bad input accepted) may carry ``xfail`` with the defect: it runs as a strict
xfail, so the fix makes it pass loudly and the mark must then go. Ids with surrounding spaces
are not an error (they are stripped, with a warning: tests/pipeline/test_reliability.py).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from encore.config.experiment import MachineSettings, load_config
from encore.pipeline import runner
from encore.pipeline.runner import all_components, output_dir
from encore.recommenders import KINDS
from encore.tracking import runs as tracking
from tests.conftest import LASTFM2K_DIR

KNOWN = ", ".join(all_components(load_config(None, settings=MachineSettings(_env_file=None))))
EXPERIMENT_NAME = "catalogue"
LASTFM2K_USERS = 20
"""Users of the small Last.fm 2K copy: the first 20 by id have 1,000 plays and 2 friendships."""

FileContent = str | bytes | Callable[[Path], None]
"""What a case writes: text (UTF-8), bytes, or a writer called with the path."""
LastfmEdit = Callable[[bytes], bytes] | None
"""A change to one file of the small Last.fm 2K copy (None = delete the file)."""


@dataclass(frozen=True)
class Case:
    """One bad input and the exact error it must produce.

    ``experiment`` is the experiment file: a mapping (dumped as YAML), raw text or bytes
    (written as they are, for syntax errors) or None (no file). ``{tmp}`` in its strings, in
    ``files`` names, in ``argv`` and in ``message`` stands for the test's temporary folder;
    ``{prepare}`` in ``message`` for the case's prepare output folder (its fingerprint
    hashes the dataset path, so it differs per test).
    """

    id: str
    experiment: dict[str, Any] | str | bytes | None
    message: str
    """The whole error block on stderr, without the leading ``error: ``."""
    files: dict[str, FileContent] = field(default_factory=dict)
    """Files to write, by path relative to ``{tmp}``."""
    lastfm2k: dict[str, LastfmEdit] | None = None
    """If set, the small Last.fm 2K copy is written to ``{tmp}/lastfm2k`` with these edits."""
    argv: tuple[str, ...] = ()
    """Extra arguments after ``--experiment {tmp}/experiment.yaml``."""
    components: str = "prepare"
    prepared_before: bool = False
    """Run ``prepare`` on good data first: its complete output must survive the failure."""
    xfail: str | None = None
    """Why the case fails today (a defect to fix): it runs as a strict xfail."""


# --------------------------------------------------------------------------- experiments
def tabular(columns: dict[str, str] | None = None, interactions: str = "plays.csv", **extra: Any) -> dict[str, Any]:
    """An experiment on a small tabular file in ``{tmp}/data``."""
    dataset = {"kind": "tabular", "interactions": f"{{tmp}}/data/{interactions}",
               "columns": columns if columns is not None else {"weight": "weight"}, **extra}
    return {"experiment": {"name": EXPERIMENT_NAME}, "dataset": dataset}


def lastfm2k(**dataset: Any) -> dict[str, Any]:
    """An experiment on the small Last.fm 2K copy in ``{tmp}/lastfm2k``."""
    return {"experiment": {"name": EXPERIMENT_NAME},
            "dataset": {"kind": "lastfm2k", "path": "{tmp}/lastfm2k", "download": False, **dataset}}


def with_(base: dict[str, Any], **sections: Any) -> dict[str, Any]:
    """``base`` with whole top-level sections added or replaced."""
    return {**base, **sections}


GOOD_PLAYS = "user,item,weight\n" + "".join(f"u{u},s{i},{1 + (u * i) % 7}\n" for u in range(8) for i in range(u, u + 9))
"""8 users x 9 items: enough for the per-user split, so only the broken part can fail."""


def plays(*rows: str, header: str = "user,item,weight") -> str:
    """A plays file: two good rows, then ``rows`` (so the bad one is data row 3 or later)."""
    return "\n".join([header, "u1,s1,3", "u1,s2,4", *rows]) + "\n"


def parquet(table: dict[str, list[Any]]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        pq.write_table(pa.table(table), path)

    return write


# --------------------------------------------------------------------------- Last.fm 2K edits
def set_field(row: int, column: int, value: str) -> Callable[[bytes], bytes]:
    """Replace field ``column`` (0-based) of data row ``row`` (1-based, after the header)."""

    def edit(data: bytes) -> bytes:
        lines = data.split(b"\n")
        end = b"\r" if lines[row].endswith(b"\r") else b""
        fields = lines[row].removesuffix(b"\r").split(b"\t")
        fields[column] = value.encode()
        lines[row] = b"\t".join(fields) + end
        return b"\n".join(lines)

    return edit


def replace_line(row: int, text: str) -> Callable[[bytes], bytes]:
    """Replace data row ``row`` (1-based) by ``text``, keeping the file's line ending."""

    def edit(data: bytes) -> bytes:
        lines = data.split(b"\n")
        end = b"\r" if lines[row].endswith(b"\r") else b""
        lines[row] = text.encode() + end
        return b"\n".join(lines)

    return edit


def keep_header(data: bytes) -> bytes:
    return data.split(b"\n", 1)[0] + b"\n"


def rename_header(old: str, new: str) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        header, rest = data.split(b"\n", 1)
        return header.replace(old.encode(), new.encode()) + b"\n" + rest

    return edit


def copy_row(source: int, target: int) -> Callable[[bytes], bytes]:
    """Overwrite data row ``target`` with a copy of data row ``source`` (a duplicate id)."""

    def edit(data: bytes) -> bytes:
        lines = data.split(b"\n")
        lines[target] = lines[source]
        return b"\n".join(lines)

    return edit


def truncate_after(row: int, keep_fields: int) -> Callable[[bytes], bytes]:
    """Cut the file inside data row ``row``: a download that stopped mid-line."""

    def edit(data: bytes) -> bytes:
        lines = data.split(b"\n")
        fields = lines[row].removesuffix(b"\r").split(b"\t")
        return b"\n".join([*lines[:row], b"\t".join(fields[:keep_fields])])

    return edit


# --------------------------------------------------------------------------- the catalogue
INVALID = "invalid configuration ({tmp}/experiment.yaml): "
"""How a validation error starts: the experiment file is the source named."""
PREPARE = "component 'prepare' failed: "
"""How a data error starts: the component it stopped, then the loader's message."""
NOT_PERMITTED = "Extra inputs are not permitted"
LASTFM2K_URL = "https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip"

CASES: list[Case] = [
    # ----- the experiment file itself
    Case("experiment-file-missing", None, "{tmp}/experiment.yaml: file not found"),
    Case("yaml-syntax-error", "experiment: {name: catalogue\ndataset: [unclosed\n",
         "{tmp}/experiment.yaml: not valid YAML: while parsing a flow mapping\n"
         '  in "<unicode string>", line 1, column 13:\n'
         "    experiment: {name: catalogue\n"
         "                ^\n"
         "expected ',' or '}', but got ':'\n"
         '  in "<unicode string>", line 2, column 8:\n'
         "    dataset: [unclosed\n"
         "           ^"),
    Case("yaml-tab-indentation", "experiment:\n\tname: catalogue\n",
         "{tmp}/experiment.yaml: not valid YAML: while scanning for the next token\n"
         "found character '\\t' that cannot start any token\n"
         '  in "<unicode string>", line 2, column 1:\n'
         "    \tname: catalogue\n"
         "    ^"),
    Case("yaml-top-level-list", "- experiment\n- dataset\n",
         "{tmp}/experiment.yaml: the top level must be a mapping of sections"),
    Case("yaml-top-level-scalar", "just a sentence\n",
         "{tmp}/experiment.yaml: the top level must be a mapping of sections"),
    # ----- unknown keys, at every depth
    Case("unknown-top-level-section", with_(lastfm2k(), experimnt={"name": "x"}),
         INVALID + f"experimnt: {NOT_PERMITTED} (got {{'name': 'x'}})"),
    Case("unknown-key-depth-2", with_(lastfm2k(), experiment={"name": EXPERIMENT_NAME, "sed": 1}),
         INVALID + f"experiment.sed: {NOT_PERMITTED} (got 1)"),
    Case("unknown-key-depth-3", with_(lastfm2k(), components={"als": {"factor": 10}}),
         INVALID + f"components.als.factor: {NOT_PERMITTED} (got 10)"),
    Case("unknown-key-depth-4", tabular(columns={"user": "user", "iten": "song"}),
         INVALID + f"dataset.columns.iten: {NOT_PERMITTED} (got 'song')"),
    Case("unknown-key-in-a-named-instance",
         with_(lastfm2k(), components={"als8": {"kind": "als", "factor": 8}}),
         INVALID + f"components.als8.factor: {NOT_PERMITTED} (got 8)"),
    Case("key-of-another-dataset-kind", lastfm2k(item_features="x.csv"),
         INVALID + f"dataset.item_features: {NOT_PERMITTED} (got 'x.csv')"),
    Case("lastfm2k-interactions-not-a-choice", lastfm2k(interactions="x.csv"),
         INVALID + "dataset.interactions: Input should be 'plays' or 'tagging' (got 'x.csv')"),
    Case("required-key-missing", {"experiment": {"name": EXPERIMENT_NAME}, "dataset": {"kind": "tabular"}},
         INVALID + "dataset.interactions: Field required (got {'kind': 'tabular'})"),
    # ----- impossible values and wrong types
    Case("negative-factors", with_(lastfm2k(), components={"als": {"factors": -3}}),
         INVALID + "components.als.factors: Input should be greater than 0 (got -3)"),
    Case("text-for-a-float", with_(lastfm2k(), components={"bpr": {"learning_rate": "fast"}}),
         INVALID + "components.bpr.learning_rate: Input should be a valid number, unable to parse string as a "
         "number (got 'fast')"),
    Case("text-for-a-bool", with_(lastfm2k(), components={"ease": {"enabled": "sometimes"}}),
         INVALID + "components.ease.enabled: Input should be a valid boolean, unable to interpret input "
         "(got 'sometimes')"),
    Case("number-for-a-section", with_(lastfm2k(), components={"popular": 5}),
         INVALID + "components.popular: a generator instance is a mapping with a `kind`: a built-in kind (popular, "
         "als, bpr, item2item, itemknn, ease, friends, userknn, twotower, sasrec, als_spark) "
         "or 'package.module:ClassName' (got 5)"),
    Case("test-fraction-above-one", with_(lastfm2k(), split={"kind": "per_user", "test_fraction": 1.5}),
         INVALID + "split.test_fraction: Input should be less than 1 (got 1.5)"),
    Case("time-split-reversed", with_(lastfm2k(), split={"kind": "time", "target_start": 0.8, "test_start": 0.5}),
         INVALID + "split: target_start must come before test_start, or the target window is "
         "empty"),
    Case("primary-metric-k-not-in-ks", with_(lastfm2k(), evaluation={"ks": [5, 10], "primary_metric": "ndcg@7"}),
         INVALID + "evaluation: primary_metric 'ndcg@7' must be METRIC@K with K in ks [5, 10]"),
    Case("empty-ks", with_(lastfm2k(), evaluation={"ks": []}),
         INVALID + "evaluation.ks: at least one k is needed (got [])"),
    Case("unknown-dataset-kind", with_(lastfm2k(), dataset={"kind": "spotify"}),
         INVALID + "dataset: kind: unknown source 'spotify'; built-in: lastfm2k, lastfm1k, lastfm360k, "
         "yandex, tabular, synthetic; or your own source as 'package.module:ClassName'"),
    Case("experiment-name-with-slash", with_(lastfm2k(), experiment={"name": "my run/1"}),
         INVALID + "experiment.name: String should match pattern '^[A-Za-z0-9_.-]+$' (got 'my run/1')"),
    Case("synthetic-more-pairs-than-possible",
         {"experiment": {"name": EXPERIMENT_NAME},
          "dataset": {"kind": "synthetic", "n_users": 10, "n_items": 10, "n_interactions": 500}},
         INVALID + "dataset: n_interactions=500 exceeds the 10 x 10 = 100 possible "
         "(user, item) pairs"),
    Case("tabular-columns-not-distinct", tabular(columns={"user": "user", "item": "user"}),
         INVALID + "dataset.columns: columns must be distinct, got ['user', 'user']"),
    Case("old-feature-models-key",
         with_(lastfm2k(), components={"ranker": {"feature_models": {"als8": {"kind": "als"}}}}),
         INVALID + "components.ranker: components.ranker.feature_models was removed: a feature "
         "model is now an ordinary generator instance with `propose: false` (its scores are ranker features, "
         "it proposes no candidates, it is evaluated beside the others). Rewrite `ranker: {feature_models: "
         "{als128: {kind: als, params: {factors: 128}}}}` as `components: {als128: {kind: als, factors: 128, "
         "propose: false}}` (the params move up one level)"),
    Case("instance-without-a-kind", with_(lastfm2k(), components={"mine": {"factors": 8}}),
         INVALID + "components.mine: a generator instance is a mapping with a `kind`: a built-in kind (popular, "
         "als, bpr, item2item, itemknn, ease, friends, userknn, twotower, sasrec, als_spark) "
         "or 'package.module:ClassName' (got {'factors': 8})"),
    Case("instance-kind-not-importable", with_(lastfm2k(), components={"mine": {"kind": "nope.mod:X"}}),
         INVALID + "components.mine: kind 'nope.mod:X': cannot import module 'nope.mod' (No module "
         "named 'nope')"),
    Case("instance-kind-not-a-recommender",
         with_(lastfm2k(), components={"mine": {"kind": "encore.io:write_json"}}),
         INVALID + "components.mine: kind 'encore.io:write_json': write_json is not a subclass "
         "of encore.recommenders.base.Recommender"),
    Case("instance-named-like-a-component", with_(lastfm2k(), components={"evaluate": {"kind": "als"}}),
         INVALID + "components: components.evaluate: 'evaluate' is a pipeline component, not a "
         "generator instance; choose another name"),
    Case("separator-of-two-characters", tabular(sep="::"),
         INVALID + "dataset.sep: String should have at most 1 character (got '::')"),
    # ----- --set (a bad key or value via --set is left out: its source is being fixed)
    Case("set-without-equals", lastfm2k(), "override 'components.als.factors' must look like section.key=value",
         argv=("--set", "components.als.factors")),
    Case("set-without-key", lastfm2k(), "override '=3' must look like section.key=value", argv=("--set", "=3")),
    # ----- component names
    Case("unknown-component", lastfm2k(), f"unknown component(s) nonsense; known: {KNOWN}",
         components="prepare,nonsense"),
    Case("unknown-components", lastfm2k(), f"unknown component(s) rankr, evaluat; known: {KNOWN}",
         components="als,rankr,evaluat"),
    Case("unknown-force", lastfm2k(), f"unknown component(s) prepar; known: {KNOWN}", argv=("--force", "prepar")),
    Case("component-without-its-input", lastfm2k(),
         "component 'als' needs the output of 'prepare' for this configuration "
         "({prepare}: no complete output); run it first, e.g. scripts/pipeline/run.sh "
         "--components prepare,als",
         lastfm2k={}, components="als"),
    # ----- tabular files (CSV and Parquet)
    Case("tabular-file-missing", tabular(), PREPARE + "plays.csv: interactions file not found: {tmp}/data/plays.csv"),
    Case("tabular-renamed-header", tabular(),
         PREPARE + "plays.csv, column 'weight': missing in the interactions file; columns found: 'user', 'item', "
         "'plays'",
         files={"data/plays.csv": plays(header="user,item,plays")}),
    Case("tabular-weight-not-a-number", tabular(),
         PREPARE + "plays.csv, column 'weight', row 3: 'three' is not a number",
         files={"data/plays.csv": plays("u2,s1,three")}),
    Case("tabular-weight-negative", tabular(), PREPARE + "plays.csv, column 'weight', row 3: '-2' is negative",
         files={"data/plays.csv": plays("u2,s1,-2")}),
    Case("tabular-weight-empty", tabular(), PREPARE + "plays.csv, column 'weight', row 3: empty value",
         files={"data/plays.csv": plays("u2,s1,")}),
    Case("tabular-weight-zero", tabular(),
         PREPARE + "plays.csv, column 'weight', row 3: '0' is zero (weights must be > 0)",
         files={"data/plays.csv": plays("u2,s1,0")}),
    Case("tabular-weight-infinite", tabular(),
         PREPARE + "plays.csv, column 'weight', row 3: 'inf' is not a finite number",
         files={"data/plays.csv": plays("u2,s1,inf")}),
    Case("tabular-truncated-line", tabular(), PREPARE + "plays.csv, column 'weight', row 3: empty value",
         files={"data/plays.csv": plays("u2,s1")}),
    Case("tabular-too-many-fields", tabular(),
         PREPARE + "plays.csv, row 3: malformed line (Expected 3 fields in line 4, saw 4)",
         files={"data/plays.csv": plays("u2,s1,3,extra")}),
    Case("tabular-too-many-fields-in-first-row", tabular(),
         PREPARE + "plays.csv, row 1: malformed line (Expected 3 fields in line 2, saw 4)",
         files={"data/plays.csv": "user,item,weight\nu1,s1,3,9\n" + GOOD_PLAYS.split("\n", 1)[1]}),
    Case("tabular-empty-user-id", tabular(), PREPARE + "plays.csv, column 'user', row 3: empty id",
         files={"data/plays.csv": plays(",s1,3")}),
    Case("tabular-empty-file", tabular(), PREPARE + "plays.csv: no data rows (empty interactions file)",
         files={"data/plays.csv": ""}),
    Case("tabular-header-only", tabular(), PREPARE + "plays.csv: no data rows (empty interactions file)",
         files={"data/plays.csv": "user,item,weight\n"}),
    Case("tabular-bad-timestamp", tabular(columns={"timestamp": "ts"}),
         PREPARE + "plays.csv, column 'ts', row 2: '01/02/2020' is not a timestamp (ISO 8601 or Unix epoch expected)",
         files={"data/plays.csv": "user,item,ts\nu1,s1,2020-01-01\nu1,s2,01/02/2020\n"}),
    Case("parquet-that-is-csv", tabular(interactions="plays.parquet"),
         PREPARE + "plays.parquet: not a readable Parquet interactions file (Parquet magic bytes not found in "
         "footer. Either the file is corrupted or this is not a parquet file.)",
         files={"data/plays.parquet": GOOD_PLAYS}),
    Case("parquet-empty-file", tabular(interactions="plays.parquet"),
         PREPARE + "plays.parquet: not a readable Parquet interactions file (Parquet file size is 0 bytes)",
         files={"data/plays.parquet": b""}),
    Case("parquet-missing-column", tabular(interactions="plays.parquet"),
         PREPARE + "plays.parquet, column 'item': missing in the interactions file; columns found: 'user', 'song', "
         "'weight'",
         files={"data/plays.parquet": parquet({"user": ["u1"], "song": ["s1"], "weight": [1.0]})}),
    Case("item-features-unknown-item", tabular(item_features="{tmp}/data/features.csv"),
         PREPARE + "features.csv, column 'item', row 2: 's99' is not a known item id (not in plays.csv)",
         files={"data/plays.csv": GOOD_PLAYS, "data/features.csv": "item,feature\ns1,rock\ns99,pop\n"}),
    Case("item-features-missing-column", tabular(item_features="{tmp}/data/features.csv"),
         PREPARE + "features.csv, column 'feature': missing in the item features file; columns found: 'item', "
         "'genre'",
         files={"data/plays.csv": GOOD_PLAYS, "data/features.csv": "item,genre\ns1,rock\n"}),
    # ----- the Last.fm 2K folder
    Case("lastfm2k-path-missing", lastfm2k(path="{tmp}/nowhere"),
         PREPARE + "{tmp}/nowhere: dataset.path does not exist or is not a folder (it must hold user_artists.dat "
         "etc.)"),
    Case("lastfm2k-not-found-download-off", with_(lastfm2k(), dataset={"kind": "lastfm2k", "download": False}),
         PREPARE + "hetrec2011-lastfm-2k: not found (looked in {tmp}/data/hetrec2011-lastfm-2k, "
         "{tmp}/elsewhere/hetrec2011-lastfm-2k); get it by setting ENCORE_DATA_DIR to a folder holding "
         f"hetrec2011-lastfm-2k/, by unzipping {LASTFM2K_URL} into {{tmp}}/elsewhere/hetrec2011-lastfm-2k, "
         "or by running `python -m encore.components.download` (dataset.download is false)",
         argv=("--set", "data_dir={tmp}/elsewhere")),
    Case("lastfm2k-file-missing", lastfm2k(), PREPARE + "tags.dat: tags file not found: {tmp}/lastfm2k/tags.dat",
         lastfm2k={"tags.dat": None}),
    Case("lastfm2k-renamed-header", lastfm2k(),
         PREPARE + "user_artists.dat, column 'weight': missing in the interactions file; columns found: 'userID', "
         "'artistID', 'plays'",
         lastfm2k={"user_artists.dat": rename_header("weight", "plays")}),
    Case("lastfm2k-weight-not-a-number", lastfm2k(),
         PREPARE + "user_artists.dat, column 'weight', row 7: 'lots' is not a number",
         lastfm2k={"user_artists.dat": set_field(7, 2, "lots")}),
    Case("lastfm2k-weight-negative", lastfm2k(),
         PREPARE + "user_artists.dat, column 'weight', row 12: '-40' is negative",
         lastfm2k={"user_artists.dat": set_field(12, 2, "-40")}),
    Case("lastfm2k-weight-empty", lastfm2k(), PREPARE + "user_artists.dat, column 'weight', row 30: empty value",
         lastfm2k={"user_artists.dat": set_field(30, 2, "")}),
    Case("lastfm2k-truncated-line", lastfm2k(), PREPARE + "user_artists.dat, column 'weight', row 500: empty value",
         lastfm2k={"user_artists.dat": truncate_after(500, 2)}),
    Case("lastfm2k-too-many-fields", lastfm2k(),
         PREPARE + "user_artists.dat, row 40: malformed line (Expected 3 fields in line 41, saw 4)",
         lastfm2k={"user_artists.dat": replace_line(40, "3\t51\t7\t12")}),
    Case("lastfm2k-user-id-not-an-integer", lastfm2k(),
         PREPARE + "user_artists.dat, column 'userID', row 3: '2.5' is not an integer",
         lastfm2k={"user_artists.dat": set_field(3, 0, "2.5")}),
    Case("lastfm2k-duplicate-artist-id", lastfm2k(),
         PREPARE + "artists.dat, column 'id', row 9: duplicate id 53 (ids must be unique)",
         lastfm2k={"artists.dat": copy_row(4, 9)}),
    Case("lastfm2k-duplicate-tag-id", lastfm2k(),
         PREPARE + "tags.dat, column 'tagID', row 2: duplicate id 1 (ids must be unique)",
         lastfm2k={"tags.dat": copy_row(1, 2)}),
    Case("lastfm2k-empty-file", lastfm2k(), PREPARE + "user_friends.dat: no data rows (empty friends file)",
         lastfm2k={"user_friends.dat": lambda data: b""}),
    Case("lastfm2k-header-only", lastfm2k(),
         PREPARE + "user_taggedartists.dat: no data rows (empty user tag assignments file)",
         lastfm2k={"user_taggedartists.dat": keep_header}),
    Case("lastfm2k-friend-unknown-user", lastfm2k(),
         PREPARE + "user_friends.dat, column 'friendID', row 2: 99999 is not a known user id (not in user_artists.dat)",
         lastfm2k={"user_friends.dat": set_field(2, 1, "99999")}),
    Case("lastfm2k-unknown-tag", lastfm2k(),
         PREPARE + "user_taggedartists.dat, column 'tagID', row 5: 999999 is not a known tag id (not in tags.dat)",
         lastfm2k={"user_taggedartists.dat": set_field(5, 2, "999999")}),
    Case("lastfm2k-tagging-user-unknown", lastfm2k(),
         PREPARE + "user_taggedartists.dat, column 'userID', row 1: 77777 is not a known user id (not in "
         "user_artists.dat)",
         lastfm2k={"user_taggedartists.dat": set_field(1, 0, "77777")}),
    Case("lastfm2k-broken-after-a-good-run", lastfm2k(),
         PREPARE + "user_artists.dat, column 'weight', row 2: 'x' is not a number",
         lastfm2k={"user_artists.dat": set_field(2, 2, "x")}, prepared_before=True),
    # ----- found by the probe of issue #9, fixed
    Case("tracking-uri-garbage", tabular(),
         "tracking URI 'garbage' (MLFLOW_TRACKING_URI or tracking.tracking_uri) is not one MLflow can use: give "
         "http(s)://host:port for a tracking server, sqlite:///path/to/mlflow.db for a local store, or leave it "
         "unset for the embedded store under mlruns/",
         files={"data/plays.csv": GOOD_PLAYS}, argv=("--set", "tracking.tracking_uri=garbage")),
    Case("tracking-store-not-sqlite", tabular(),
         "{tmp}/junk.db: the local MLflow store is not an SQLite database (damaged or overwritten); move it aside "
         "(mv {tmp}/junk.db {tmp}/junk.db.bad) and run again to start a new store",
         files={"data/plays.csv": GOOD_PLAYS, "junk.db": b"\x89PNG\r\n" + bytes(200)},
         argv=("--set", "tracking.tracking_uri=sqlite:///{tmp}/junk.db")),
    Case("set-unknown-key-names-the-override", tabular(),
         "invalid configuration (--set components.als.factorz=3): "
         "components.als.factorz: Extra inputs are not permitted (got 3)",
         files={"data/plays.csv": GOOD_PLAYS}, argv=("--set", "components.als.factorz=3")),
    Case("every-generator-disabled", with_(tabular(), components={
        name: {"enabled": False} for name in KINDS}),  # every default instance that proposes
         "components.ranker.generators: no enabled generator to take candidates from",
         files={"data/plays.csv": GOOD_PLAYS}, components="prepare,ranker"),
    Case("ranker-generators-empty-list", with_(tabular(), components={"ranker": {"generators": []}}),
         "invalid configuration ({tmp}/experiment.yaml): components.ranker.generators: an empty "
         "list gives the ranker no candidates; leave the key out (null) to take every enabled generator, or name "
         "the generators to use (got [])",
         files={"data/plays.csv": GOOD_PLAYS}),
    Case("tabular-latin1-text", tabular(),
         PREPARE + "plays.csv, column 'item', row 2: byte 0xf6 at byte offset 29 (line 3) is not valid utf-8 - the "
         "file is in another encoding: convert it to utf-8 (e.g. iconv -f latin1 -t utf-8)",
         files={"data/plays.csv": "user,item,weight\nu1,s1,1\nu1,M\xf6r,2\n".encode("latin-1")}),
    Case("tabular-binary-file", tabular(),
         PREPARE + "plays.csv, column 'user', row 1: byte 0x89 at byte offset 17 (line 2) is not valid utf-8 - "
         "the file looks binary, not text: is it the right file?",
         files={"data/plays.csv": b"user,item,weight\n\x89PNG\x00\x00\x1a,1,2\n"}),
    Case("experiment-path-is-a-folder", None, "{tmp}/data: is a folder, not a YAML file",
         files={"data/plays.csv": GOOD_PLAYS}, argv=("--experiment", "{tmp}/data")),
    # ----- found by this catalogue, fixed
    Case("set-value-not-valid-yaml", lastfm2k(),
         "override 'components.als.factors=[1': the value is not valid YAML",
         argv=("--set", "components.als.factors=[1")),
    Case("experiment-file-not-utf8", b"experiment:\n  name: catalogu\xe9\n",
         "{tmp}/experiment.yaml: not valid UTF-8 (byte 0xe9 at byte offset 28)"),
]


# --------------------------------------------------------------------------- running a case
def subst(value: Any, tmp: Path) -> Any:
    """Replace ``{tmp}`` in every string of ``value`` (a str, list or mapping)."""
    if isinstance(value, str):
        return value.replace("{tmp}", str(tmp))
    if isinstance(value, dict):
        return {k: subst(v, tmp) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(subst(v, tmp) for v in value)
    return value


@pytest.fixture(scope="module")
def small_lastfm2k() -> dict[str, bytes]:
    """The first users of the real Last.fm 2K and everything they reference, as raw bytes.

    Consistent on its own (every friend, tag and artist resolves), so a case fails only
    through its own edit. Built from the real files once per module; never stored in the repo.
    """
    assert (LASTFM2K_DIR / "user_artists.dat").is_file(), (
        f"HetRec 2011 Last.fm 2K not found at {LASTFM2K_DIR}: set ENCORE_LASTFM2K_DIR (docs/data.md, 'Data')"
    )

    def rows(name: str) -> tuple[bytes, list[bytes]]:
        header, *lines = (LASTFM2K_DIR / name).read_bytes().split(b"\n")
        return header, [line for line in lines if line.strip()]

    def field_of(line: bytes, i: int) -> int:
        return int(line.split(b"\t")[i])

    def keep(header: bytes, lines: list[bytes]) -> bytes:
        return b"\n".join([header, *lines]) + b"\n"  # lines keep their own "\r" (CRLF files)

    ua_header, ua = rows("user_artists.dat")
    users = sorted({field_of(line, 0) for line in ua})[:LASTFM2K_USERS]
    user_set = set(users)
    ua = [line for line in ua if field_of(line, 0) in user_set]
    artist_set = {field_of(line, 1) for line in ua}
    ar_header, ar = rows("artists.dat")
    ar = [line for line in ar if field_of(line, 0) in artist_set]
    uta_header, uta = rows("user_taggedartists.dat")
    uta = [line for line in uta if field_of(line, 0) in user_set and field_of(line, 1) in artist_set]
    tag_set = {field_of(line, 2) for line in uta}
    tg_header, tg = rows("tags.dat")
    tg = [line for line in tg if field_of(line, 0) in tag_set]
    fr_header, fr = rows("user_friends.dat")
    fr = [line for line in fr if field_of(line, 0) in user_set and field_of(line, 1) in user_set]
    assert len(ua) == 1000 and len(fr) == 2, (len(ua), len(fr))
    return {
        "user_artists.dat": keep(ua_header, ua),
        "artists.dat": keep(ar_header, ar),
        "tags.dat": keep(tg_header, tg),
        "user_taggedartists.dat": keep(uta_header, uta),
        "user_friends.dat": keep(fr_header, fr),
    }


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module: creating its schema costs seconds, once is enough."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_uri: str) -> Path:
    """Outputs, data and MLflow in temporary folders; the repository's ``.env`` switched off.

    ``MachineSettings`` reads ``<repo>/.env`` (and ``encore.mlflow_server.settings`` reads ``$ENV_FILE``);
    a developer's file there must not redirect outputs or tracking, so the settings' env_file
    is set to none and the variables that matter are set (or removed) explicitly.
    """
    monkeypatch.setitem(MachineSettings.model_config, "env_file", None)
    monkeypatch.setenv("ENCORE_OUTPUT_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("ENCORE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    for name in ("ENCORE_SPARK_CONFIG", "ENV_FILE", tracking.PARENT_RUN_ENV):
        monkeypatch.delenv(name, raising=False)
    # The embedded store keeps artifacts in <repo>/mlruns/artifacts whatever the SQLite path.
    monkeypatch.setattr(tracking, "LOCAL_STORE_DIR", tmp_path / "mlruns")
    (tmp_path / "data").mkdir()
    settings = MachineSettings()
    assert settings.encore_output_dir == tmp_path / "outputs" and settings.mlflow_tracking_uri == mlflow_uri
    return tmp_path


def write_case_files(case: Case, tmp: Path, small_lastfm2k: dict[str, bytes]) -> None:
    if case.lastfm2k is not None:
        folder = tmp / "lastfm2k"
        folder.mkdir()
        for name, data in small_lastfm2k.items():
            edit = case.lastfm2k.get(name, lambda raw: raw)
            if name in case.lastfm2k and edit is None:
                continue
            (folder / name).write_bytes(edit(data))  # type: ignore[misc]
    for rel, content in case.files.items():
        path = tmp / subst(rel, tmp)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            content(path)
    experiment = tmp / "experiment.yaml"
    if isinstance(case.experiment, dict):
        experiment.write_text(yaml.safe_dump(subst(case.experiment, tmp), sort_keys=False))
    elif isinstance(case.experiment, str):
        experiment.write_text(case.experiment)
    elif isinstance(case.experiment, bytes):
        experiment.write_bytes(case.experiment)


def case_argv(case: Case, tmp: Path) -> list[str]:
    return ["--experiment", str(tmp / "experiment.yaml"), "--components", case.components,
            *subst(case.argv, tmp)]


BOOKKEEPING = (".locks", ".file-digests.json", ".usage.jsonl")  # locks, digest cache, clean's record of use
"""Not outputs: the lock files of output folders and the cache of data-file digests."""


def snapshot(root: Path) -> dict[Path, str]:
    """Every output path under ``root`` with its content hash ("" for folders), bookkeeping left out."""
    if not root.exists():
        return {}
    return {p: "" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if not set(p.relative_to(root).parts) & set(BOOKKEEPING)}


def error_block(stderr: str) -> str:
    """The ``error: ...`` block the CLI prints: from its first line to the end of stderr."""
    match = re.search(r"^error: ", stderr, flags=re.MULTILINE)
    assert match, f"no 'error: ' line on stderr:\n{stderr}"
    return stderr[match.end():].removesuffix("\n")


def expected_message(case: Case, tmp: Path) -> str:
    """``case.message`` with ``{tmp}`` filled in, and ``{prepare}`` = this config's prepare folder.

    The prepare folder's fingerprint hashes the dataset path, which lies under ``{tmp}``, so
    it is computed with the runner's own function instead of being written into the case.
    """
    message = subst(case.message, tmp)
    if "{prepare}" in message:
        argv = subst(case.argv, tmp)
        overrides = [value for flag, value in itertools.pairwise(argv) if flag == "--set"]
        config = load_config(tmp / "experiment.yaml", overrides)
        message = message.replace("{prepare}", str(output_dir(config, "prepare")))
    return message


def run_good_prepare(tmp: Path, small_lastfm2k: dict[str, bytes], capsys: pytest.CaptureFixture[str]) -> None:
    """``prepare`` on the unbroken small Last.fm 2K copy in ``{tmp}/lastfm2k-good``."""
    folder = tmp / "lastfm2k-good"
    folder.mkdir()
    for name, data in small_lastfm2k.items():
        (folder / name).write_bytes(data)
    experiment = tmp / "good.yaml"
    experiment.write_text(yaml.safe_dump(subst(lastfm2k(path="{tmp}/lastfm2k-good"), tmp)))
    code = runner.main(["--experiment", str(experiment), "--components", "prepare"])
    err = capsys.readouterr().err
    assert code == 0, err


def params(cases: list[Case]) -> list[Any]:
    """The cases as pytest parameters; a case with ``xfail`` gets a strict xfail mark."""
    return [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else [])
            for c in cases]


@pytest.mark.parametrize("case", params(CASES))
def test_bad_input(case: Case, isolated: Path, small_lastfm2k: dict[str, bytes],
                   capsys: pytest.CaptureFixture[str]) -> None:
    tmp = isolated
    outputs = tmp / "outputs"
    if case.prepared_before:
        run_good_prepare(tmp, small_lastfm2k, capsys)
        assert [p.name.split("-")[0] for p in (outputs / EXPERIMENT_NAME).iterdir()
                if p.name not in BOOKKEEPING] == ["prepare"]
    write_case_files(case, tmp, small_lastfm2k)
    before = snapshot(outputs)

    code = runner.main(case_argv(case, tmp))
    stderr = capsys.readouterr().err

    assert code == 2, stderr
    assert "Traceback" not in stderr, stderr
    assert error_block(stderr) == expected_message(case, tmp)
    after = snapshot(outputs)
    temporary = [str(p) for p in after if ".tmp-" in p.name]
    assert not temporary, f"temporary output folder left behind: {temporary}"
    # New empty folders (outputs/<experiment>/, made before any work) are all a failure may leave.
    leftovers = [p for p in after.keys() - before.keys()
                 if not (p.is_dir() and not any(q.name not in BOOKKEEPING for q in p.iterdir()))]
    assert not leftovers, f"left behind: {sorted(map(str, leftovers))}"
    assert not [p for p in after.keys() - before.keys() if p.name == "_SUCCESS.json"]
    assert {p: h for p, h in after.items() if p in before} == before, "a complete earlier output changed"


def test_catalogue_is_big_enough_and_ids_are_unique() -> None:
    """Issue #9 asks for at least 30 cases; duplicate ids would hide one case behind another."""
    assert len(CASES) >= 32
    assert len({c.id for c in CASES}) == len(CASES)


def test_the_unbroken_inputs_prepare_cleanly(isolated: Path, small_lastfm2k: dict[str, bytes],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The good files the cases start from pass ``prepare``: each case fails by its edit alone."""
    tmp = isolated
    run_good_prepare(tmp, small_lastfm2k, capsys)
    (tmp / "data" / "plays.csv").write_text(GOOD_PLAYS)
    (tmp / "data" / "features.csv").write_text("item,feature\ns1,rock\ns2,pop\n")
    experiment = tmp / "tabular.yaml"
    experiment.write_text(yaml.safe_dump(subst(tabular(item_features="{tmp}/data/features.csv"), tmp)))
    assert runner.main(["--experiment", str(experiment), "--components", "prepare"]) == 0, capsys.readouterr().err
    done = sorted((tmp / "outputs" / EXPERIMENT_NAME).glob("prepare-*/_SUCCESS.json"))
    assert len(done) == 2
