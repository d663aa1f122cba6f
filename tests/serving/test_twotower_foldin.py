"""Fold-in with a two-tower model in the service: when the registered bundle's ranker uses a
``twotower`` instance, a listener the model never saw gets that model's fold-in (the kind's own
``fold_in`` of their listens, scored against its item embeddings) from the real service, which
runs without PyTorch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from encore.config.experiment import EncoreConfig
from encore.data.prepared import PreparedData
from encore.outputs import GeneratorOutput, RegisterOutput
from encore.pipeline.runner import output_dir, pipeline_components, run_pipeline
from encore.serving.pyfunc import FOLDIN_FILE
from encore.tracking.model_registry import CHALLENGER
from tests.conftest import REPO_ROOT, TINY_SYNTHETIC, make_config
from tests.serving.http_client import call_json, free_port

OFF = {"enabled": False}
# The smallest pipeline that registers a bundle whose ranker reads a twotower instance: what the
# test proves (the service folds a new listener in as the model does, without torch) needs no
# more users, epochs, trees or bootstrap rounds than this (it took ~113 s with 300 users, 4 epochs,
# 30 trees, 100 rounds).
TWOTOWER = TINY_SYNTHETIC | {
    "experiment": {"name": "twotower_serving", "seed": 3},
    "dataset": TINY_SYNTHETIC["dataset"] | {"n_users": 150, "n_interactions": 4500},
    "components": TINY_SYNTHETIC["components"] | {
        "ranker": {"iterations": 10, "early_stopping_rounds": 5, "similar_items_from": "als"},
        "als": {"iterations": 2, "factors": 16},
        "twotower": {"kind": "twotower", "epochs": 2, "patience": 1, "factors": 16, "num_threads": 1},
        **{name: OFF for name in ("bpr", "item2item", "itemknn", "friends", "ease", "userknn", "als128", "als32",
                                  "bpr128", "ease500", "knncos")}},
    "evaluation": {"n_bootstrap": 20},
}


@pytest.fixture(scope="module")
def twotower_run(tmp_path_factory: pytest.TempPathFactory) -> EncoreConfig:
    """prepare -> als, popular, twotower -> ranker -> evaluate -> register on tiny synthetic data."""
    config = make_config(tmp_path_factory.mktemp("twotower_serving"), TWOTOWER)
    run_pipeline(config, [*pipeline_components(config), "register"], note="twotower-serving")
    return config


def test_a_new_listener_gets_the_twotower_fold_in_from_a_service_without_torch(twotower_run: EncoreConfig,
                                                                            tmp_path: Path) -> None:
    bundle = RegisterOutput(output_dir(twotower_run, "register")).bundle
    assert (bundle / FOLDIN_FILE).is_file()
    assert json.loads((bundle / "info.json").read_text())["foldin_from"] == "twotower"
    prepared = PreparedData(output_dir(twotower_run, "prepare"))
    items = prepared.items["raw_id"].astype(str).to_numpy()
    model = GeneratorOutput(output_dir(twotower_run, "twotower")).model("train")
    # Five listens of four artists (one played twice) by a user the model never saw.
    listened = np.array([3, 17, 17, 42, 250])
    row = csr_matrix((np.ones(len(listened)), (np.zeros(len(listened), dtype=int), listened)),
                     shape=(1, model.n_items_))
    row.sum_duplicates()
    scores = (model.fold_in(row) @ model.item_factors_.T)[0]
    scores[listened] = -np.inf
    expected = items[np.argsort(-scores, kind="stable")[:10]].tolist()

    # The service process cannot import torch: a `torch` package that refuses to load comes first.
    blocker = tmp_path / "no_torch" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch is blocked in this test')\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENCORE_SERVING_", "MLFLOW_"))}
    env |= {"ENV_FILE": str(tmp_path / "absent.env"),
            "PYTHONPATH": os.pathsep.join([str(blocker.parent), str(REPO_ROOT)])}
    cmd = [sys.executable, "-m", "encore.serving", "--port", str(port), "--tracking-uri",
           str(twotower_run.tracking.tracking_uri), "--model-name", twotower_run.tracking.registered_model_name,
           "--model-alias", CHALLENGER, "--event-store", f"sqlite:///{tmp_path / 'events.db'}"]
    log = tmp_path / "server.log"
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if call_json(base, "/ready")["ready"]:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        assert call_json(base, "/health")["model"]["foldin"] == "twotower:twotower"
        events = [{"user_id": "new-listener", "item_id": items[i], "timestamp": f"2020-01-0{n + 1}T00:00:00Z"}
                  for n, i in enumerate(listened)]
        assert call_json(base, "/events", {"events": events}) == {"accepted": len(events)}
        body = call_json(base, "/recommendations/new-listener?k=10")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code in (0, -signal.SIGTERM), log.read_text()
    assert body["known_user"] is False and body["recent_listens"] == len(listened)
    assert [entry["source"] for entry in body["items"]] == ["foldin"] * 10
    assert [entry["item_id"] for entry in body["items"]] == expected
    np.testing.assert_allclose([entry["score"] for entry in body["items"]], np.sort(scores)[::-1][:10], atol=1e-5)
