"""``python -m encore.pipeline clean``: what the last N runs used stays, a held lock is never
taken, what was freed is said, and a kept output is still reused afterwards."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from encore.io import path_lock
from encore.pipeline.clean import clean, kept_outputs, one_run, record_use
from encore.pipeline.cli import main as pipeline_main
from encore.pipeline.runner import output_dir, run_pipeline
from tests.conftest import TINY_SYNTHETIC, make_config


def _folder(root: Path, name: str, size: int = 1000) -> Path:
    folder = root / "exp" / name
    folder.mkdir(parents=True)
    (folder / "data.bin").write_bytes(b"x" * size)
    return folder


def test_clean_keeps_the_last_runs_outputs_and_never_a_held_one(tmp_path: Path, capsys) -> None:
    old, shared, held, new = (_folder(tmp_path, n) for n in ("als-old", "prepare-1", "ranker-held", "als-new"))
    for used in ([old, shared, held], [shared, new], [shared, new]):
        with one_run():
            record_use(used)
    assert kept_outputs(tmp_path / "exp", 2) == {"prepare-1", "als-new"}
    untouched = _folder(tmp_path.parent / f"{tmp_path.name}-other", "x")  # another output root: not looked at
    with path_lock(held):  # a running pipeline computing (or reading) it
        assert pipeline_main(["clean", "--keep", "2", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert not old.exists() and held.exists() and shared.exists() and new.exists() and untouched.exists()
    assert "removed" in out and "als-old" in out and "held" in out and "freed 0.0 MiB in 1 folder" in out
    # Released: the next clean takes it; keep=3 would have kept it.
    assert [c.path.name for c in clean(tmp_path, 3)] == []
    assert [(c.path.name, c.bytes) for c in clean(tmp_path, 2)] == [("ranker-held", 1000)]


def test_an_experiment_without_a_record_is_left_alone(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "als-1")
    assert clean(tmp_path, 1) == [] and folder.exists()


def test_reuse_still_works_after_clean(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Two configurations of one experiment, keep 1: the first's own output goes, the shared
    ``prepare`` and the second's stay, and running the second again reuses both."""
    first = make_config(tmp_path, TINY_SYNTHETIC)
    second = make_config(tmp_path, TINY_SYNTHETIC | {"components": {"popular": {"measure": "plays"}}})
    chosen = ["prepare", "popular"]
    run_pipeline(first, chosen)
    run_pipeline(second, chosen)
    gone, kept = output_dir(first, "popular"), output_dir(second, "popular")
    assert gone != kept and output_dir(first, "prepare") == output_dir(second, "prepare")
    removed = clean(first.output_dir, 1)
    assert [c.path for c in removed] == [gone] and removed[0].bytes > 0
    assert kept.exists() and output_dir(second, "prepare").exists()
    with caplog.at_level(logging.INFO, logger="encore"):
        run_pipeline(second, chosen)
    assert f"popular: reusing {kept}" in caplog.text and "prepare: reusing" in caplog.text
