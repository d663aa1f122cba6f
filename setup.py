"""Build of the ``encore`` distribution.

The default YAML files live once, in the repository's top-level ``config/`` folder. ``build_py``
copies them into the built package as ``encore/defaults/`` so an installed Encore (a wheel in
site-packages, no checkout) finds them; ``encore.config.envfile`` prefers ``$ENCORE_HOME/config``
and a checkout's ``config/`` over that copy.
"""

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

here = Path(__file__).parent
requirements = [
    line.strip()
    for line in (here / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

DEFAULT_FILES = ("components.yaml", "time_split.yaml", "spark_config.yaml", "logger_config.yaml")
"""The files of ``config/`` an installed Encore needs (the defaults ``encore.config.envfile`` resolves)."""


class BuildWithDefaults(build_py):
    """build_py that also copies ``config/<DEFAULT_FILES>`` into ``<build>/encore/defaults/``."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "encore" / "defaults"
        self.mkpath(str(target))
        for name in DEFAULT_FILES:
            source = here / "config" / name
            if not source.is_file():
                raise FileNotFoundError(f"config/{name}: a default file the package ships is missing")
            self.copy_file(str(source), str(target / name))


setup(
    name="encore",
    version="0.1.0",
    description="MLflow-tracked experiment framework for music recommendation with a CatBoost ensemble ranker",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["encore", "encore.*"]),
    python_requires=">=3.11",
    install_requires=requirements,
    # The Spark preprocessing engine (dataset.engine: spark) also needs a Java 17+ runtime.
    # neural: the sasrec and twotower kinds, on the CPU build of PyTorch (an unpinned torch pulls CUDA).
    extras_require={"spark": ["pyspark==4.1.1"], "neural": ["torch==2.13.0"]},
    cmdclass={"build_py": BuildWithDefaults},
    license="Apache-2.0",
)
