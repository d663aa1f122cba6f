"""A normal, non-editable install works: a wheel built from the sources, installed into a folder of
its own and imported from outside the checkout, finds its defaults and runs its CLI.

The wheel is built with the shared virtualenv's setuptools (``--no-build-isolation``, no network)
from a copy of the sources, so the build leaves no ``build/`` or ``*.egg-info`` in the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from encore.config import envfile
from tests.conftest import REPO_ROOT, TINY_SYNTHETIC, make_config

# What the build reads: the package, the defaults it ships, the build files.
SOURCES = ("encore", "config", "setup.py", "pyproject.toml", "requirements.txt", "requirements-dev.txt", "README.md",
           "MANIFEST.in")

PROBE = """
import importlib.util, json, sys
from pathlib import Path

import encore
from encore.config import envfile
from encore.config.experiment import DEFAULTS_FILE, load_config

config = load_config(Path("experiment.yaml"))
scripts = importlib.util.find_spec("scripts")
print(json.dumps({
    "encore": encore.__file__,
    "checkout": str(envfile.CHECKOUT),
    "home": str(envfile.ENCORE_HOME),
    "defaults_dir": str(envfile.DEFAULTS_DIR),
    "defaults_file": str(DEFAULTS_FILE),
    "scripts": scripts.origin if scripts else None,
    "output_dir": str(config.output_dir),
    "fingerprint": config.fingerprint(),
}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder a wheel of the current sources was installed into with ``pip install --target``."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    wheels = root / "wheels"
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
                           capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("encore-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        top = {name.split("/")[0] for name in archive.namelist()}
    assert top == {"encore", wheel.name.split("-py3")[0] + ".dist-info"}, f"the wheel installs {sorted(top)}"
    target = root / "site"
    done = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return target


def clean_env(site: Path, **extra: str) -> dict[str, str]:
    """The environment minus anything pointing at the checkout or a machine's Encore settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ENCORE_", "MLFLOW_", "PYTHON")) and k != "ENV_FILE"}
    return env | {"PYTHONPATH": str(site), **extra}


def run_installed(site: Path, cwd: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """Python with only the install folder on its path (``-P``: not the working folder, ``-s``: no user site)."""
    return subprocess.run([sys.executable, "-s", "-P", *args], cwd=cwd, env=clean_env(site, **extra),
                          capture_output=True, text=True, timeout=300, check=False)


def test_the_installed_package_finds_its_defaults_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "experiment.yaml").write_text(yaml.safe_dump(TINY_SYNTHETIC))
    assert not (installed / "scripts").exists() and not (installed / "encore" / "scripts").exists()

    done = run_installed(installed, work, "-c", PROBE)
    assert done.returncode == 0, done.stderr[-3000:]
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(probe["encore"]).is_relative_to(installed), probe
    assert probe["checkout"] == "None", probe
    assert Path(probe["defaults_dir"]) == installed / "encore" / "defaults", probe
    assert Path(probe["defaults_file"]).read_text() == (REPO_ROOT / "config" / "components.yaml").read_text()
    assert probe["scripts"] is None or not Path(probe["scripts"]).is_relative_to(installed), probe
    # outputs go to the working folder, never into site-packages
    assert Path(probe["home"]) == work.resolve() and Path(probe["output_dir"]) == work.resolve() / "outputs", probe
    # the same experiment as in the checkout: the packaged defaults are the checkout's
    assert probe["fingerprint"] == make_config(tmp_path, TINY_SYNTHETIC).fingerprint()


def test_encore_home_holds_the_defaults_and_the_outputs(installed: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    defaults = yaml.safe_load((REPO_ROOT / "config" / "components.yaml").read_text())
    defaults["experiment"]["seed"] = 1234567
    (home / "config" / "components.yaml").write_text(yaml.safe_dump(defaults))
    (home / "experiment.yaml").write_text(yaml.safe_dump({"dataset": TINY_SYNTHETIC["dataset"]}))
    code = ("import json; from encore.config import envfile; from encore.config.experiment import load_config; "
            "c = load_config(envfile.ENCORE_HOME / 'experiment.yaml'); "
            "print(json.dumps([str(envfile.DEFAULTS_DIR), str(c.output_dir), c.experiment.seed]))")
    done = run_installed(installed, tmp_path, "-c", code, ENCORE_HOME=str(home))
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [str(home / "config"), str(home / "outputs"), 1234567]


@pytest.mark.parametrize("module", ["encore.pipeline", "encore.pipeline.runner"])
def test_the_installed_pipeline_cli_answers_help(installed: Path, tmp_path: Path, module: str) -> None:
    done = run_installed(installed, tmp_path, "-m", module, "--help")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "usage:" in done.stdout and "--experiment" in done.stdout, done.stdout


def test_defaults_and_home_resolution_order(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "config").mkdir(parents=True)
    (checkout / "config" / "components.yaml").write_text("{}")
    (checkout / "setup.py").write_text("")
    (checkout / "encore").mkdir()
    home = tmp_path / "home"
    assert envfile.find_checkout(checkout / "encore") == checkout
    assert envfile.find_checkout(tmp_path / "site" / "encore") is None
    # a home without config/ still takes the outputs; the defaults come from the checkout
    assert envfile.resolve_home({"ENCORE_HOME": str(home)}, checkout) == home
    assert envfile.resolve_defaults_dir({"ENCORE_HOME": str(home)}, checkout) == checkout / "config"
    (home / "config").mkdir(parents=True)
    (home / "config" / "components.yaml").write_text("{}")
    assert envfile.resolve_defaults_dir({"ENCORE_HOME": str(home)}, checkout) == home / "config"
    assert envfile.resolve_home({}, checkout) == checkout
    assert envfile.resolve_defaults_dir({}, None) == envfile.PACKAGED_DEFAULTS_DIR
    assert envfile.resolve_home({}, None) == Path.cwd()
