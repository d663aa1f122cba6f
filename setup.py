from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
requirements = [
    line.strip()
    for line in (here / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

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
    extras_require={"spark": ["pyspark==4.1.1"]},
    license="Apache-2.0",
)
