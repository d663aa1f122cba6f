"""The markers of tests/markers.py: given by folder, fixture and source, and enforced at run time.

A small suite is written to a temporary folder and run by pytest in a fresh process with the
markers plugin, so the runtime guard is exercised for real: a test that completes a pipeline
component, reads the real-data folder or launches spark-submit without its marker must fail,
and the same test with the marker must pass.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.markers import observed_markers

CONFTEST = """
from tests.markers import pytest_collection_modifyitems, pytest_configure, pytest_runtest_makereport, \\
    pytest_runtest_protocol  # noqa: F401
"""

SUITE = '''
import os
import subprocess
from pathlib import Path

import pytest


def complete_a_component(folder: Path) -> None:
    """What io.write_json does for a component's marker, under a name the source reading misses."""
    (folder / "._SUCCESS.json.tmp").write_text("{}")
    (folder / "._SUCCESS.json.tmp").replace(folder / "_SUCCESS.json")


def run_pipeline(folder: Path) -> None:
    """A stand-in: calling a function of this name is what the source reading looks for."""


def test_plain() -> None:
    assert True


def test_hidden_pipeline(tmp_path: Path) -> None:
    complete_a_component(tmp_path)


@pytest.mark.pipeline
def test_marked_pipeline(tmp_path: Path) -> None:
    complete_a_component(tmp_path)


def test_seen_pipeline(tmp_path: Path) -> None:
    run_pipeline(tmp_path)
    complete_a_component(tmp_path)


def test_child_pipeline(tmp_path: Path) -> None:
    code = "from pathlib import Path; Path(r'%s', '_SUCCESS.json').write_text('{}')" % tmp_path
    subprocess.run(["python3", "-c", code], check=True)


def test_hidden_real_data() -> None:
    (Path(os.environ["ENCORE_LASTFM2K_DIR"]) / "user_artists.dat").read_text()


def test_hidden_spark(tmp_path: Path) -> None:
    launcher = tmp_path / "bin" / "spark-submit"
    launcher.parent.mkdir()
    launcher.write_text("#!/bin/sh\\nexit 0\\n")
    launcher.chmod(0o755)
    subprocess.run([str(launcher)], check=True)
'''


def run_suite(tmp_path: Path, *args: str) -> str:
    """pytest on SUITE in a fresh process (markers from pyproject.toml); its -rA summary."""
    markers = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\nmarkers =\n" + "".join(f"    {m}\n" for m in markers))
    (suite / "conftest.py").write_text(CONFTEST)
    (suite / "test_suite.py").write_text(SUITE)
    fake_data = tmp_path / "hetrec2011-lastfm-2k"
    fake_data.mkdir()
    (fake_data / "user_artists.dat").write_text("userID\tartistID\tweight\n")
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT), "ENCORE_LASTFM2K_DIR": str(fake_data)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "--strict-markers",
                           "--rootdir", str(suite), *args, str(suite)],
                          cwd=suite, env=env, capture_output=True, text=True, timeout=300, check=False)
    return done.stdout + done.stderr


def outcomes(output: str) -> dict[str, str]:
    return {name: outcome for outcome, name in re.findall(r"^(PASSED|FAILED|ERROR) \S*::(\w+)", output, re.M)}


def test_the_guard_fails_a_test_that_needs_a_marker_it_lacks(tmp_path: Path) -> None:
    output = run_suite(tmp_path)
    assert outcomes(output) == {
        "test_plain": "PASSED",
        "test_hidden_pipeline": "FAILED",
        "test_marked_pipeline": "PASSED",
        "test_seen_pipeline": "PASSED",
        "test_child_pipeline": "FAILED",
        "test_hidden_real_data": "FAILED",
        "test_hidden_spark": "FAILED",
    }, output
    assert "test_hidden_pipeline needs the marker(s) pipeline" in output, output
    assert "test_hidden_real_data needs the marker(s) realdata" in output, output
    assert "test_hidden_spark needs the marker(s) spark" in output, output


def test_unit_selects_only_tests_without_a_heavy_marker(tmp_path: Path) -> None:
    output = run_suite(tmp_path, "-m", "unit", "--collect-only", "-q")
    collected = set(re.findall(r"::(\w+)$", output, re.M))
    # the source reading found run_pipeline; the others are unit until the guard says otherwise
    assert "test_seen_pipeline" not in collected and "test_marked_pipeline" not in collected, output
    assert {"test_plain", "test_hidden_pipeline"} <= collected, output


def test_observed_markers_of_processes_and_files(tmp_path: Path) -> None:
    # commands as tuples and a split "run.sh": the source reading would otherwise take this test for one
    # that runs the pipeline and the service
    real = str(tmp_path / "real")

    def popen(*command: str) -> set[str]:
        return observed_markers("subprocess.Popen", (None, command, None, None), real)

    assert popen(sys.executable, "-m", "encore.pipeline.runner", "-e", "x") == {"pipeline"}
    assert popen(sys.executable, "-m", "encore.pipeline", "--help") == set()
    assert popen(sys.executable, "-m", "encore.serving", "--port", "1") == {"integration"}
    assert popen("bash", "/x/scripts/pipeline/run" + ".sh") == {"pipeline"}
    assert popen("/opt/spark/bin/spark-submit", "pyspark-shell") == {"spark"}
    assert popen(sys.executable, "-m", "encore.components.download", "--dest", f"{real}/x") == {"realdata"}
    assert observed_markers("open", (f"{real}/user_artists.dat", "r", 0), real) == {"realdata"}
    assert observed_markers("open", (f"{real}-copy/user_artists.dat", "r", 0), real) == set()
    assert observed_markers("os.rename", ("a/._SUCCESS.json.tmp", "a/_SUCCESS.json", -1, -1), real) == {"pipeline"}
