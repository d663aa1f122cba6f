"""Integrity of reuse and lineage (docs/pipeline.md, "Reliability"): each test is a defect a probe found.

Reuse is keyed on the data's content, the code and the configuration; outputs are verified
before reuse; killed runs leave nothing that a later run trusts; concurrent runs share work.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from encore import lineage
from encore.config.experiment import EncoreConfig, load_config, with_settings
from encore.io import MARKER, path_lock, read_marker, remove_debris
from encore.pipeline import execution, reuse_keys, runner
from encore.pipeline.runner import fingerprint, output_dir, run_pipeline
from encore.pipeline.runner import main as pipeline_main
from encore.tracking.runs import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, experiment_name, tracking_uri
from tests.conftest import REPO_ROOT, TINY_SYNTHETIC, make_config


def write_events(path: Path, n_users: int = 60, n_items: int = 80, seed: int = 0, pad: bool = False) -> Path:
    """A small tabular listening file: every user listens to 12 items (at least 5 are needed)."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), 12)
    items = np.concatenate([rng.choice(n_items, 12, replace=False) for _ in range(n_users)])
    frame = pd.DataFrame({"user": users.astype(str), "item": items.astype(str),
                          "weight": rng.integers(1, 50, len(users))})
    if pad:  # the same users written with surrounding spaces on every other row
        frame.loc[::2, "user"] = " " + frame.loc[::2, "user"] + " "
    frame.to_csv(path, index=False)
    return path


def tabular_experiment(path: Path) -> dict:
    return {"experiment": {"name": "tab", "seed": 1},
            "dataset": {"kind": "tabular", "interactions": str(path), "columns": {"weight": "weight"}},
            "split": {"kind": "per_user"}}


def runs_of(config: EncoreConfig) -> pd.DataFrame:
    mlflow.set_tracking_uri(tracking_uri(config))
    return mlflow.search_runs(experiment_names=[experiment_name(config)])


def latest_component_runs(config: EncoreConfig) -> pd.DataFrame:
    runs = runs_of(config)
    parents = runs[runs["tags.mlflow.parentRunId"].isna()].sort_values("start_time")
    return runs[runs["tags.mlflow.parentRunId"] == parents["run_id"].iloc[-1]].set_index("tags.encore.component")


# ----------------------------------------------------------------------- 1. data
def test_editing_a_data_file_in_place_recomputes_prepare_and_retags(tmp_path: Path) -> None:
    data = write_events(tmp_path / "events.csv")
    config = make_config(tmp_path, tabular_experiment(data))
    run_pipeline(config, ["prepare", "popular"])
    before = latest_component_runs(config).loc["prepare", "tags.encore.data_sha256.interactions"]

    frame = pd.read_csv(data)
    frame.loc[0, "weight"] += 1  # same size class, same path: only the content says it changed
    frame.to_csv(data, index=False)
    run_pipeline(config, ["prepare", "popular"])
    after = latest_component_runs(config)
    assert set(after["tags.encore.reused"]) == {"false"}  # prepare and everything downstream
    assert after.loc["prepare", "tags.encore.data_sha256.interactions"] == lineage.sha256_file(data) != before
    runs = runs_of(config)
    parent = runs[runs["tags.mlflow.parentRunId"].isna()].sort_values("start_time").iloc[-1]
    assert parent["tags.encore.data_sha256.interactions"] == lineage.sha256_file(data)


def test_another_copy_of_lastfm2k_is_not_served_the_old_output(tmp_path: Path, lastfm2k_dir: Path,
                                                               monkeypatch) -> None:
    copies = []
    for name in ("a", "b"):
        copy = tmp_path / name / lastfm2k_dir.name
        shutil.copytree(lastfm2k_dir, copy)
        copies.append(copy)
    ua = copies[1] / "user_artists.dat"
    header, *rows = ua.read_text().splitlines(keepends=True)
    user, artist, weight = rows[-1].split("\t")
    ua.write_text("".join([header, *rows[:-1], f"{user}\t{artist}\t{int(weight) * 2}\n"]))  # one play count differs

    experiment = {"experiment": {"name": "l2k", "seed": 1}, "dataset": {"kind": "lastfm2k", "download": False}}
    digests = []
    for copy in copies:
        monkeypatch.setenv("ENCORE_DATA_DIR", str(copy.parent))
        config = make_config(tmp_path, experiment)
        run_pipeline(config, ["prepare"])
        digests.append(latest_component_runs(config).loc["prepare"])
    assert [d["tags.encore.reused"] for d in digests] == ["false", "false"]
    assert digests[1]["tags.encore.data_sha256.interactions"] == lineage.sha256_file(ua)
    assert digests[0]["tags.encore.data_sha256.interactions"] == lineage.sha256_file(lastfm2k_dir / ua.name)


def test_unchanged_files_are_not_hashed_again(tmp_path: Path, monkeypatch) -> None:
    data = write_events(tmp_path / "events.csv")
    cache = tmp_path / "digests.json"
    calls = []
    monkeypatch.setattr(lineage, "sha256_file", lambda p: calls.append(p) or "h")
    monkeypatch.setattr(lineage, "_memory", {})
    assert lineage.file_digests({"x": data}, cache) == {"x": "h"}
    monkeypatch.setattr(lineage, "_memory", {})  # a new process: only the cache file remembers
    assert lineage.file_digests({"x": data}, cache) == {"x": "h"}
    assert len(calls) == 1
    os.utime(data, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched: hashed again
    lineage.file_digests({"x": data}, cache)
    assert len(calls) == 2
    assert lineage.file_digests({"y": tmp_path / "absent.csv"}, cache) == {"y": lineage.MISSING}


# ----------------------------------------------------------------------- 2. code
def test_a_code_change_changes_the_fingerprint_of_what_it_computes_only(tiny_config: EncoreConfig,
                                                                       monkeypatch) -> None:
    # An instance's reuse key covers the template and its recommender's module, not the other models'.
    assert "encore.recommenders.als" not in lineage.module_closure(runner.GENERATOR_MODULE)
    als_code = lineage.code_digest("encore.recommenders.als")
    assert runner.code_digests(tiny_config, "als")["recommender"] == als_code
    assert "encore.components.ranker" not in lineage.module_closure(runner.GENERATOR_MODULE)
    before = {name: fingerprint(tiny_config, name) for name in ("prepare", "popular", "als", "ranker")}
    source = lineage._source

    def edited(module: str) -> bytes:
        return source(module) + (b"\nEDITED = 1\n" if module == "encore.recommenders.als" else b"")

    monkeypatch.setattr(lineage, "_source", edited)
    lineage.code_digest.cache_clear()
    lineage.module_closure.cache_clear()
    try:
        after = {name: fingerprint(tiny_config, name) for name in ("prepare", "popular", "als", "ranker")}
    finally:
        lineage.code_digest.cache_clear()
        lineage.module_closure.cache_clear()
    assert after["prepare"] == before["prepare"] and after["popular"] == before["popular"]
    assert after["als"] != before["als"] and after["ranker"] != before["ranker"]


def test_index_settings_are_in_the_reuse_key_only_when_the_index_is_built(tiny_config: EncoreConfig) -> None:
    def with_als(**settings) -> EncoreConfig:
        return with_settings(tiny_config, {"als": settings})

    exact = fingerprint(tiny_config, "als")
    assert fingerprint(with_als(ann={"index": "flat"}), "als") == exact        # exact: no index is built
    ann = fingerprint(with_als(retrieval="ann"), "als")
    assert ann != exact
    assert fingerprint(with_als(retrieval="ann", ann={"index": "flat"}), "als") != ann


def test_a_package_upgrade_changes_every_fingerprint(tiny_config: EncoreConfig, monkeypatch) -> None:
    before = fingerprint(tiny_config, "popular")
    monkeypatch.setattr(reuse_keys, "package_versions", lambda: {"implicit": "9.9.9"})
    assert fingerprint(tiny_config, "popular") != before


def test_a_reused_output_is_tagged_with_the_commit_that_produced_it(tiny_config: EncoreConfig,
                                                                   monkeypatch) -> None:
    monkeypatch.setattr(execution, "git_commit", lambda: "c0ffee")
    run_pipeline(tiny_config, ["prepare"])
    monkeypatch.setattr(execution, "git_commit", lambda: "beef")
    run_pipeline(tiny_config, ["prepare"])
    prepared = latest_component_runs(tiny_config).loc["prepare"]
    assert prepared["tags.encore.reused"] == "true"
    assert prepared["tags.encore.output_commit"] == "c0ffee"
    assert read_marker(output_dir(tiny_config, "prepare"))["git_commit"] == "c0ffee"


# ----------------------------------------------------------------------- 3. ids
def test_ids_with_surrounding_spaces_are_one_user(tmp_path: Path, caplog) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "c").mkdir()
    padded = make_config(tmp_path / "p", tabular_experiment(write_events(tmp_path / "p.csv", pad=True)))
    clean = make_config(tmp_path / "c", tabular_experiment(write_events(tmp_path / "c.csv")))
    with caplog.at_level("WARNING"):
        run_pipeline(padded, ["prepare"])
    run_pipeline(clean, ["prepare"])
    assert "p.csv: stripped surrounding whitespace from ids in column user" in caplog.text
    for part in ("users", "base", "test"):
        a = pd.read_parquet(output_dir(padded, "prepare") / f"{part}.parquet")
        b = pd.read_parquet(output_dir(clean, "prepare") / f"{part}.parquet")
        pd.testing.assert_frame_equal(a, b)


# ----------------------------------------------------------------------- 4. debris
def test_damaged_or_missing_output_files_are_recomputed_not_reused(tiny_config: EncoreConfig) -> None:
    run_pipeline(tiny_config, ["prepare", "popular"])
    out = output_dir(tiny_config, "popular")
    candidates = next(out.glob("candidates_*.parquet"))
    candidates.write_bytes(candidates.read_bytes()[:100])  # truncated
    run_pipeline(tiny_config, ["prepare", "popular"])
    assert latest_component_runs(tiny_config).loc["popular", "tags.encore.reused"] == "false"
    assert pd.read_parquet(candidates).shape[0] > 0

    (out / "result.json").unlink()
    run_pipeline(tiny_config, ["prepare", "popular"])
    assert latest_component_runs(tiny_config).loc["popular", "tags.encore.reused"] == "false"

    data = bytearray(candidates.read_bytes())  # same size, other bytes
    data[-20] ^= 0xFF
    candidates.write_bytes(bytes(data))
    run_pipeline(tiny_config, ["prepare", "popular"])
    assert latest_component_runs(tiny_config).loc["popular", "tags.encore.reused"] == "false"
    run_pipeline(tiny_config, ["prepare", "popular"])
    assert latest_component_runs(tiny_config).loc["popular", "tags.encore.reused"] == "true"


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_debris_of_dead_writers_is_removed_and_live_work_kept(tmp_path: Path) -> None:
    dead = tmp_path / f".als-abc.tmp-{dead_pid()}-x1"
    mine = tmp_path / f".als-abc.tmp-{os.getpid()}-x2"
    replaced = tmp_path / f".prepare-abc.old-{dead_pid()}"
    output = tmp_path / "als-abc"
    for folder in (dead, mine, replaced, output):
        folder.mkdir()
    assert sorted(remove_debris(tmp_path)) == sorted([dead, replaced])
    assert mine.is_dir() and output.is_dir()
    reused = tmp_path / f".als-abc.tmp-{os.getpid()}-x3"  # a folder older than the process holding its pid
    reused.mkdir()
    os.utime(reused, (0, 0))
    assert remove_debris(tmp_path) == [reused]


def start_pipeline(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = os.environ | {"ENCORE_OUTPUT_DIR": str(tmp_path / "outputs"),
                        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    experiment = tmp_path / "experiment.yaml"
    return subprocess.Popen([sys.executable, "-m", "encore.pipeline.runner", "--experiment", str(experiment), *args],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_killed_run_is_marked_killed_and_its_debris_removed(tmp_path: Path, tiny_config: EncoreConfig) -> None:
    run_dir = tiny_config.run_dir
    proc = start_pipeline(tmp_path, "--components", "prepare,bpr", "--set", "components.bpr.iterations=5000")
    try:
        wait_for(lambda: run_dir.is_dir() and any(p.name.startswith(".bpr-") and ".tmp-" in p.name
                                                  for p in run_dir.iterdir()))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    runs = runs_of(tiny_config)
    assert sorted(runs["status"]) == ["FINISHED", "RUNNING", "RUNNING"]  # prepare ended; parent and bpr never will
    run_pipeline(tiny_config, ["prepare"])
    runs = runs_of(tiny_config)
    killed = runs[runs["tags.encore.pid"] == str(proc.pid)]
    assert sorted(killed["status"]) == ["FINISHED", "KILLED", "KILLED"]
    assert not [p for p in run_dir.iterdir() if ".tmp-" in p.name]


def test_two_runs_at_once_share_the_work(tmp_path: Path, tiny_config: EncoreConfig) -> None:
    procs = [start_pipeline(tmp_path, "--components", "prepare,popular,als") for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    runs = runs_of(tiny_config)
    children = runs[runs["tags.mlflow.parentRunId"].notna()]
    computed = children[children["tags.encore.reused"] == "false"]
    assert sorted(computed["tags.encore.component"]) == ["als", "popular", "prepare"]  # each once
    assert len(children) == 6
    metrics = children.groupby("tags.encore.component")["metrics.ndcg_at_10"].nunique(dropna=True)
    assert (metrics <= 1).all()


def test_the_lock_of_a_dead_holder_is_taken_over(tmp_path: Path) -> None:
    target = tmp_path / "als-abc"
    code = ("import sys, time; from pathlib import Path; from encore.io import path_lock\n"
            f"with path_lock(Path({str(target)!r})):\n    print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    started = time.monotonic()
    with path_lock(target):
        assert time.monotonic() - started < 5


# ----------------------------------------------------------------------- 5-7. messages
def cli(tmp_path: Path, *args: str, capsys) -> tuple[int, str]:
    """The pipeline CLI in-process: exit code and its error message (stderr from ``error:`` on)."""
    code = pipeline_main(list(args))
    err = capsys.readouterr().err
    return code, err[err.find("error:"):].strip() if "error:" in err else err.strip()


@pytest.fixture
def tiny_file(tmp_path: Path, monkeypatch) -> Path:
    import yaml

    monkeypatch.setenv("ENCORE_OUTPUT_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(TINY_SYNTHETIC))
    return path


@pytest.mark.parametrize("uri", ["garbage", "not-a-scheme://x", "/some/folder"])
def test_a_garbage_tracking_uri_is_one_line(tmp_path: Path, tiny_file: Path, uri: str, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    code, err = cli(tmp_path, "-e", str(tiny_file), "-c", "prepare", capsys=capsys)
    assert code == 2
    assert err == (f"error: tracking URI '{uri}' (MLFLOW_TRACKING_URI or tracking.tracking_uri) is not one MLflow can "
                   "use: give http(s)://host:port for a tracking server, sqlite:///path/to/mlflow.db for a local "
                   "store, or leave it unset for the embedded store under mlruns/")


def test_a_damaged_local_store_is_one_line_naming_the_file(tmp_path: Path, tiny_file: Path, capsys) -> None:
    store = tmp_path / "mlflow.db"
    store.write_bytes(os.urandom(4096))
    code, err = cli(tmp_path, "-e", str(tiny_file), "-c", "prepare", capsys=capsys)
    assert code == 2
    assert err == (f"error: {store}: the local MLflow store is not an SQLite database (damaged or overwritten); "
                   f"move it aside (mv {store} {store}.bad) and run again to start a new store")
    assert not (tmp_path / "outputs").exists()  # rejected before any work


def test_a_bad_set_key_names_the_override(tmp_path: Path, tiny_file: Path, capsys) -> None:
    code, err = cli(tmp_path, "-e", str(tiny_file), "-c", "prepare", "--set", "components.als.factorz=3",
                    "--set", "experiment.seed=5", capsys=capsys)
    assert code == 2
    # One line, naming the override and the key (and no other override).
    assert err == "error: invalid configuration (--set components.als.factorz=3): components.als.factorz: " \
        "Extra inputs are not permitted (got 3)"
    # Two problems: a line each below the first.
    code, err = cli(tmp_path, "-e", str(tiny_file), "-c", "prepare", "--set", "components.als.factorz=3",
                    "--set", "split.test_fraction=1.5", capsys=capsys)
    assert code == 2 and sorted(err.splitlines()[1:]) == [
        "  components.als.factorz: Extra inputs are not permitted (got 3)",
        "  split.test_fraction: Input should be less than 1 (got 1.5)"]


def test_every_generator_disabled_is_rejected_before_any_work(tmp_path: Path, tiny_file: Path, capsys) -> None:
    off = [f"components.{name}.enabled=false" for name in runner.generator_names(load_config(tiny_file))]
    code, err = cli(tmp_path, "-e", str(tiny_file), *[a for o in off for a in ("--set", o)], capsys=capsys)
    assert code == 2
    assert err == "error: components.ranker.generators: no enabled generator to take candidates from"
    assert not (tmp_path / "outputs").exists()


def test_an_empty_ranker_generator_list_is_rejected(tmp_path: Path, tiny_file: Path, capsys) -> None:
    code, err = cli(tmp_path, "-e", str(tiny_file), "--set", "components.ranker.generators=[]", capsys=capsys)
    assert code == 2
    assert "components.ranker.generators: an empty list gives the ranker no candidates" in err


def test_undecodable_bytes_get_an_honest_hint(tmp_path: Path) -> None:
    from encore.data import DataError
    from encore.data.parsing import read_table

    text = tmp_path / "latin.csv"
    text.write_bytes("user,item\n1,Mörcheeba\n".encode("latin-1"))
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"user,item\n1,\x00\x9f\x00\n")
    with pytest.raises(DataError, match=re.escape("convert it to utf-8 (e.g. iconv -f latin1 -t utf-8)") + "$"):
        read_table(text, columns=["user", "item"])
    with pytest.raises(DataError, match=re.escape("the file looks binary, not text: is it the right file?") + "$"):
        read_table(binary, columns=["user", "item"])


def test_run_sh_before_setup_says_run_make_setup(tmp_path: Path) -> None:
    bare = tmp_path / "bare-python"
    bare.write_text("#!/bin/sh\nexec /usr/bin/env -i /usr/bin/python3 -I \"$@\"\n")
    bare.chmod(0o755)
    for args in (["--help"], ["--components", "prepare"]):
        done = subprocess.run([str(REPO_ROOT / "scripts/pipeline/run.sh"), *args], capture_output=True, text=True,
                              env=os.environ | {"ENCORE_PYTHON": str(bare)}, check=False)
        assert done.returncode == 2, done
        assert "Traceback" not in done.stderr
        assert done.stderr.strip().endswith("run `make setup` first (it creates .venv with Encore's packages)")


# ----------------------------------------------------------------------- 10. lineage in the UI
def test_runs_carry_lineage_the_ui_shows(tiny_config: EncoreConfig, tmp_path: Path) -> None:
    data = write_events(tmp_path / "events.csv")
    (tmp_path / "t").mkdir()
    config = make_config(tmp_path / "t", tabular_experiment(data))
    run_pipeline(config, ["prepare"], note="first try")
    run_pipeline(config, ["prepare"])
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(experiment_name(config))
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    runs = runs_of(config)
    parents = runs[runs["tags.mlflow.parentRunId"].isna()].sort_values("start_time")
    short = config.fingerprint()[:8]
    names = list(parents["tags.mlflow.runName"])
    assert [n.split(" ", 3)[3] for n in names] == [f"{short} first try", f"{short} (all reused)"], names
    for run_id in [*parents["run_id"], *runs[runs["tags.encore.component"] == "prepare"]["run_id"]]:
        inputs = client.get_run(run_id).inputs.dataset_inputs
        assert len(inputs) == 1, run_id
        dataset = inputs[0].dataset
        assert dataset.name == "interactions:events.csv"
        assert dataset.digest == lineage.sha256_file(data)[:32]
        assert {t.key: t.value for t in inputs[0].tags}["encore.sha256"] == lineage.sha256_file(data)


def test_outputs_are_marked_with_a_manifest(tiny_config: EncoreConfig) -> None:
    run_pipeline(tiny_config, ["prepare"])
    marker = read_marker(output_dir(tiny_config, "prepare"))
    assert "base.parquet" in marker["files"] and MARKER not in marker["files"]
    size, _, digest = marker["files"]["base.parquet"]
    path = output_dir(tiny_config, "prepare") / "base.parquet"
    assert (size, digest) == (path.stat().st_size, lineage.sha256_file(path))


def test_the_set_keys_the_tuning_grid_searches_are_named(tiny_file: Path) -> None:
    from encore.pipeline.cli import tuned_overrides

    config = load_config(tiny_file, ["tuning.grid={als: {factors: [4, 8]}}"])
    assert tuned_overrides(config, ["components.als.factors=16", "components.als.regularization=0.5",
                                    "components.bpr.factors=16", "experiment.seed=3"]) == ["components.als.factors"]
