"""Re-ranking in the service: the served list is the rerank component's for the same inputs, and
items a user dislikes or blocks (``POST /events`` with an ``action``) are never served to them
again, across a restart of the real service."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from encore.config.experiment import EncoreConfig
from encore.data.prepared import PreparedData
from encore.outputs import RegisterOutput, RerankOutput
from encore.pipeline.runner import output_dir
from encore.serving.blended_model import ServedModel
from encore.serving.pyfunc import EncoreServingModel
from encore.tracking.model_registry import CHALLENGER
from tests.conftest import REPO_ROOT
from tests.serving.http_client import call_json, free_port


def test_served_lists_are_the_offline_reranked_lists(reranked_run: EncoreConfig) -> None:
    bundle = RegisterOutput(output_dir(reranked_run, "register")).bundle
    served = ServedModel.from_tables(EncoreServingModel().load_bundle(bundle), name="m", version="1", run_id=None)
    assert served.reranker is not None
    prepared = PreparedData(output_dir(reranked_run, "prepare"))
    offline = RerankOutput(output_dir(reranked_run, "rerank")).recommendations()
    users, items = prepared.users["raw_id"].to_numpy(), prepared.items["raw_id"].to_numpy()
    checked = 0
    for user in np.unique(offline["user"].to_numpy())[::5]:
        expected = items[offline[offline["user"] == user].sort_values("rank")["item"].to_numpy()[:10]].tolist()
        got = served.recommend(str(users[user]), np.zeros(0, dtype=np.int64), 10, recent_listens=5,
                               online_share=0.5, foldin_min_listens=3)
        assert got.item_ids == expected, users[user]
        checked += 1
    assert checked >= 30


def _serve(config: EncoreConfig, tmp_path: Path, log_name: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENCORE_SERVING_", "MLFLOW_"))}
    env |= {"ENV_FILE": str(tmp_path / "absent.env")}
    cmd = [sys.executable, "-m", "encore.serving", "--port", str(port), "--tracking-uri",
           str(config.tracking.tracking_uri), "--model-name", config.tracking.registered_model_name,
           "--model-alias", CHALLENGER, "--event-store", f"sqlite:///{tmp_path / 'events.db'}"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=(tmp_path / log_name).open("wb"),
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, (tmp_path / log_name).read_text()
        try:
            if call_json(base, "/ready")["ready"]:
                return proc, base
        except OSError:
            pass
        assert time.monotonic() < deadline, (tmp_path / log_name).read_text()
        time.sleep(0.3)


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)


def test_rejected_items_are_never_served_again_even_after_a_restart(reranked_run: EncoreConfig,
                                                                   tmp_path: Path) -> None:
    prepared = PreparedData(output_dir(reranked_run, "prepare"))
    user = str(prepared.users["raw_id"].iloc[int(RerankOutput(output_dir(reranked_run, "rerank"))
                                                 .recommendations()["user"].iloc[0])])
    proc, base = _serve(reranked_run, tmp_path, "first.log")
    try:
        before = [entry["item_id"] for entry in call_json(base, f"/recommendations/{user}?k=10")["items"]]
        disliked, blocked, skipped = before[0], before[1], before[2]
        answer = call_json(base, "/events", {"events": [
            {"user_id": user, "item_id": disliked, "action": "dislike"},
            {"user_id": user, "item_id": blocked, "action": "block"},
            {"user_id": user, "item_id": skipped, "action": "skip"}]})
        assert answer == {"accepted": 3}
        after = [entry["item_id"] for entry in call_json(base, f"/recommendations/{user}?k=10")["items"]]
        assert len(after) == 10 and disliked not in after and blocked not in after
        assert skipped in after  # a skip is recorded, not a rejection
        other = str(prepared.users["raw_id"].iloc[-1])
        assert call_json(base, "/events", {"user_id": other, "item_id": disliked})["accepted"] == 1  # play: the default
    finally:
        _stop(proc)
    proc, base = _serve(reranked_run, tmp_path, "second.log")
    try:
        again = [entry["item_id"] for entry in call_json(base, f"/recommendations/{user}?k=50")["items"]]
        assert disliked not in again and blocked not in again
        assert again[:8] == after[:8]
    finally:
        _stop(proc)
    stored = pd.read_sql("SELECT user_id, item_id, action FROM encore_feedback_events ORDER BY id",
                         f"sqlite:///{tmp_path / 'events.db'}")
    assert stored["action"].tolist() == ["dislike", "block", "skip"]


def test_sqlite_rejections_are_kept_for_good(tmp_path: Path) -> None:
    from encore.serving.events import Feedback, Listen, SQLiteEventStore

    store = SQLiteEventStore(tmp_path / "events.db", history_size=2)
    store.add_feedback([Feedback("u", "a", "dislike", 1.0), Feedback("u", "b", "skip", 2.0),
                        Feedback("u", "c", "block", 3.0)])
    store.add([Listen("u", f"i{n}", 10.0 + n) for n in range(5)])  # listens are trimmed; rejections never
    store.close()
    again = SQLiteEventStore(tmp_path / "events.db", history_size=2)
    assert again.rejected("u") == ["a", "c"] and again.rejected("v") == []
    assert again.recent("u", 10) == ["i4", "i3"]
    again.close()
