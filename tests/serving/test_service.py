"""The recommendation service (scripts/serving) against a registry holding a model the
pipeline trained on Last.fm 2K: every endpoint, the blend rules, fold-in, persistence,
reload (good and failing), bad input, and a real uvicorn process on loopback."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from encore.config.experiment import ConfigError
from encore.outputs import RegisterOutput
from encore.pipeline.runner import all_components, output_dir, run_pipeline
from encore.serving.app import create_app
from encore.serving.blend import Ranked, interleave, neighbour_scores
from encore.serving.events import Listen, SQLiteEventStore
from encore.serving.settings import ServingSettings, load_serving_settings
from encore.tracking.model_registry import CHAMPION, register_run_model
from tests.conftest import REPO_ROOT, make_config
from tests.serving.http_client import free_port

TOKEN = "t0ken-for-tests"
# The cheapest pipeline that still trains every stage the bundle needs on the real data: ALS
# (also the similar-items source: EASE's dense inverse costs ~50 s on 2 busy cores) +
# popularity, a short CatBoost ranker. ~100 s on 2 cores.
CHEAP = ["components.bpr.enabled=false", "components.item2item.enabled=false",
         "components.itemknn.enabled=false", "components.friends.enabled=false",
         "components.ease.enabled=false", "components.ranker.similar_items_from=als",
         "components.userknn.enabled=false",
         *[f"components.{name}.enabled=false" for name in ("als128", "als32", "bpr128", "ease500", "knncos")],
         "components.ranker.iterations=40",
         "components.ranker.candidates_per_generator=20", "components.ranker.features=[generator,user,item]",
         "components.als.iterations=5", "evaluation.n_bootstrap=100"]


@dataclass(frozen=True)
class Registry:
    uri: str
    name: str
    run_id: str
    version: str
    bundle: Path
    tmp: Path


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory, lastfm2k_dir: Path) -> Registry:
    """Run prepare -> ... -> register, promote once on Last.fm 2K into a temporary SQLite store."""
    tmp = tmp_path_factory.mktemp("serving")
    experiment = {"experiment": {"name": "serving", "seed": 42},
                  "dataset": {"kind": "lastfm2k", "path": str(lastfm2k_dir), "download": False}}
    config = make_config(tmp, experiment, CHEAP)
    run_pipeline(config, list(all_components(config)))
    registered = RegisterOutput(output_dir(config, "register")).registered()
    uri = config.tracking.tracking_uri
    champion = MlflowClient(tracking_uri=uri).get_model_version_by_alias(registered["model_name"], CHAMPION)
    assert str(champion.version) == str(registered["version"])
    return Registry(uri, registered["model_name"], registered["run_id"], str(registered["version"]),
                    RegisterOutput(output_dir(config, "register")).bundle, tmp)


def settings_for(registry: Registry, tmp: Path, **overrides: object) -> ServingSettings:
    values: dict[str, object] = {"tracking_uri": registry.uri, "model_name": registry.name,
                                 "event_store": f"sqlite:///{tmp / 'events.db'}", "admin_token": TOKEN}
    return ServingSettings(**(values | overrides))


@pytest.fixture
def service(registry: Registry, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(registry, tmp_path))) as client:
        yield client


@pytest.fixture(scope="session")
def tables(registry: Registry) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(registry.bundle / f"{name}.parquet").astype({"item_id": str})
            for name in ("recommendations", "popular", "similar_items")}


def items_of(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [entry["item_id"] for entry in response.json()["items"]]


def sources_of(response) -> list[str]:
    return [entry["source"] for entry in response.json()["items"]]


def offline_list(tables: dict[str, pd.DataFrame], user: str) -> list[str]:
    recs = tables["recommendations"].astype({"user_id": str})
    return recs[recs["user_id"] == user].sort_values("rank")["item_id"].tolist()


def similar_of(tables: dict[str, pd.DataFrame], items: list[str]) -> set[str]:
    sim = tables["similar_items"].astype({"similar_item_id": str})
    return set(sim[sim["item_id"].isin(items)]["similar_item_id"])


# ------------------------------------------------------------------ health, lists, similar


def test_health_and_ready_report_the_loaded_champion(service: TestClient, registry: Registry) -> None:
    assert service.get("/ready").json() == {"ready": True}
    health = service.get("/health").json()
    assert health["status"] == "ok"
    model = health["model"]
    assert (model["name"], model["version"], model["run_id"]) == (registry.name, registry.version, registry.run_id)
    assert model["loaded_at"] and model["load_seconds"] > 0
    assert model["users"] == 1892 and model["items"] >= 17632


def test_ready_is_false_until_a_model_loads(registry: Registry, tmp_path: Path) -> None:
    with TestClient(create_app(settings_for(registry, tmp_path, model_name="no-such-model"))) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json() == {"ready": False}
        health = client.get("/health").json()
        assert health["model"] is None and "no-such-model" in health["last_error"]
        response = client.get("/recommendations/2")
        assert response.status_code == 503 and "no model loaded" in response.json()["detail"]


def test_known_user_gets_the_ranker_list_as_the_pyfunc_does(service: TestClient, registry: Registry,
                                                            tables: dict[str, pd.DataFrame]) -> None:
    response = service.get("/recommendations/2", params={"k": 10})
    assert items_of(response) == offline_list(tables, "2")[:10]
    assert set(sources_of(response)) == {"ranker"} and response.json()["known_user"] is True
    mlflow.set_tracking_uri(registry.uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{registry.name}@{CHAMPION}")
    expected = pyfunc.predict(pd.DataFrame({"user_id": ["2"], "k": [10]}))
    assert items_of(response) == expected["item_id"].tolist()


def test_unknown_user_gets_the_popular_fallback_with_k_items(service: TestClient,
                                                             tables: dict[str, pd.DataFrame]) -> None:
    popular = tables["popular"]["item_id"].tolist()
    for k in (1, 10, 100):
        response = service.get("/recommendations/somebody-new", params={"k": k})
        assert items_of(response) == popular[:k]
        assert set(sources_of(response)) == {"popular"}


def test_blend_dedups_skips_just_played_and_alternates(service: TestClient, tables: dict[str, pd.DataFrame]) -> None:
    offline = offline_list(tables, "2")
    # The user just played two of their own offline top items and one other artist.
    played = [offline[0], offline[3], tables["popular"]["item_id"].iloc[0]]
    for n, item in enumerate(played):
        assert service.post("/events", json={"user_id": "2", "item_id": item, "timestamp": 1_700_000_000 + n}
                            ).status_code == 200
    response = service.get("/recommendations/2", params={"k": 20})
    items, sources = items_of(response), sources_of(response)
    assert len(items) == 20 and len(set(items)) == 20
    assert not set(items) & set(played)
    # online_share 0.5: online, offline, online, ... from slot 0
    assert sources[:6] == ["online", "ranker"] * 3
    online = [i for i, s in zip(items, sources, strict=True) if s == "online"]
    assert set(online) <= similar_of(tables, played)  # recent_listens=3: all three seed it
    ranker = [i for i, s in zip(items, sources, strict=True) if s == "ranker"]
    assert ranker == [i for i in offline if i not in set(played) | set(online)][: len(ranker)]
    assert response.json()["recent_listens"] == 3


def test_blend_share_is_configurable(registry: Registry, tmp_path: Path, tables: dict[str, pd.DataFrame]) -> None:
    offline = offline_list(tables, "2")
    with TestClient(create_app(settings_for(registry, tmp_path, online_share=0.0))) as client:
        client.post("/events", json={"user_id": "2", "item_id": offline[0]})
        response = client.get("/recommendations/2")
        assert items_of(response) == offline[1:11] and set(sources_of(response)) == {"ranker"}


def test_new_listener_gets_foldin_not_only_popular(service: TestClient, tables: dict[str, pd.DataFrame]) -> None:
    listens = tables["similar_items"]["item_id"].drop_duplicates().iloc[[5, 50, 500]].tolist()
    user = "brand-new-listener"
    service.post("/events", json={"user_id": user, "item_id": listens[0]})
    few = service.get(f"/recommendations/{user}")
    # one listen (< foldin_min_listens = 3): "because you just played" blended with popular
    assert sources_of(few)[0] == "online" and "popular" in sources_of(few)
    service.post("/events", json={"events": [{"user_id": user, "item_id": i} for i in listens[1:]]})
    response = service.get(f"/recommendations/{user}")
    items, sources = items_of(response), sources_of(response)
    assert sources[0] == "foldin" and sources.count("foldin") >= 5
    assert not set(items) & set(listens)
    assert set(i for i, s in zip(items, sources, strict=True) if s == "foldin") <= similar_of(tables, listens)
    assert items != tables["popular"]["item_id"].tolist()[:10]


def test_similar_items_endpoint(service: TestClient, tables: dict[str, pd.DataFrame]) -> None:
    item = tables["popular"]["item_id"].iloc[0]
    sim = tables["similar_items"].astype({"similar_item_id": str})
    expected = sim[(sim["item_id"] == item) & (sim["similar_item_id"] != item)].sort_values("rank")
    response = service.get(f"/similar/{item}", params={"k": 5})
    assert items_of(response) == expected["similar_item_id"].tolist()[:5]
    assert set(sources_of(response)) == {"similar"}
    long = service.get(f"/similar/{item}", params={"k": 60})
    assert len(items_of(long)) == 60 and item not in items_of(long) and "popular" in sources_of(long)
    missing = service.get("/similar/not-an-artist")
    assert missing.status_code == 404 and "not-an-artist" in missing.json()["detail"]


# ------------------------------------------------------------------ events


def test_events_survive_a_restart_and_history_is_bounded(registry: Registry, tmp_path: Path,
                                                         tables: dict[str, pd.DataFrame]) -> None:
    items = tables["popular"]["item_id"].tolist()[:8]
    settings = settings_for(registry, tmp_path, history_size=5)
    with TestClient(create_app(settings)) as client:
        batch = [{"user_id": "42", "item_id": item, "timestamp": 1_600_000_000 + n} for n, item in enumerate(items)]
        # the batch's 3 oldest are trimmed by its own transaction: not acknowledged (#25)
        assert client.post("/events", json={"events": batch}).json() == {
            "accepted": 5, "not_kept": [0, 1, 2],
            "detail": "3 event(s) older than their user's newest 5 listens were not kept"}
    with TestClient(create_app(settings)) as client:  # a new process would see the same file
        response = client.get("/recommendations/42", params={"k": 50})
        assert response.json()["recent_listens"] == 5
        assert not set(items_of(response)) & set(items[3:])  # the 5 newest are excluded...
    with sqlite3.connect(tmp_path / "events.db") as conn:
        stored = [row[0] for row in conn.execute("SELECT item_id FROM encore_listen_events ORDER BY ts")]
    assert stored == items[3:]  # ...and only they are kept


# ------------------------------------------------------------------ bad input


def test_bad_input_gets_a_clear_4xx_and_stores_nothing(service: TestClient, tmp_path: Path,
                                                       tables: dict[str, pd.DataFrame]) -> None:
    good = tables["popular"]["item_id"].iloc[0]
    unknown = service.post("/events", json={"events": [{"user_id": "7", "item_id": good},
                                                       {"user_id": "7", "item_id": "no-such-artist"}]})
    assert unknown.status_code == 422
    assert "events[1].item_id 'no-such-artist'" in unknown.json()["detail"]
    assert service.get("/recommendations/7").json()["recent_listens"] == 0  # the good one was not stored either
    for k in (0, 101, "ten"):
        response = service.get("/recommendations/2", params={"k": k})
        assert response.status_code == 422 and "query.k" in response.json()["detail"], response.text
    malformed = service.post("/events", content=b'{"user_id": "7", "item_id"',
                             headers={"content-type": "application/json"})
    assert malformed.status_code == 422 and "JSON" in malformed.json()["detail"]
    missing = service.post("/events", json={"user_id": "7"})
    assert missing.status_code == 422 and "item_id" in missing.json()["detail"]
    extra = service.post("/events", json={"user_id": "7", "item_id": good, "plays": 3})
    assert extra.status_code == 422 and "plays" in extra.json()["detail"]
    bad_time = service.post("/events", json={"user_id": "7", "item_id": good, "timestamp": "yesterday"})
    assert bad_time.status_code == 422 and "timestamp" in bad_time.json()["detail"]
    oversized = service.post("/events", json={"events": [{"user_id": "7", "item_id": good}] * 501})
    assert oversized.status_code == 413 and "501 events exceeds the limit of 500" in oversized.json()["detail"]
    huge = service.post("/events", content=b" " * 2_000_000, headers={"content-type": "application/json"})
    assert huge.status_code == 413 and "exceeds the limit" in huge.json()["detail"]
    assert service.get("/recommendations/7").json()["recent_listens"] == 0
    assert service.get("/health").json()["status"] == "ok"  # nothing took the process down


def test_settings_reject_unknown_keys_and_bad_values(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("ENCORE_SERVING_MODEL_ALIASS=champion\n")
    with pytest.raises(ConfigError, match="ENCORE_SERVING_MODEL_ALIASS"):
        load_serving_settings(env, environ={})
    with pytest.raises(ConfigError, match="ENCORE_SERVING_ONLINE_SHARE"):
        load_serving_settings(tmp_path / "none", environ={"ENCORE_SERVING_ONLINE_SHARE": "2"})
    settings = load_serving_settings(tmp_path / "none", environ={"ENCORE_SERVING_PORT": "8123", "OTHER": "x"})
    assert settings.port == 8123 and settings.admin_token is None


def test_an_unreachable_event_store_is_one_clear_error_without_the_password(capsys: pytest.CaptureFixture[str],
                                                                            tmp_path: Path) -> None:
    from encore.serving.__main__ import main

    port = free_port()  # nothing listens there
    code = main(["--env-file", str(tmp_path / "none.env"),
                 "--event-store", f"postgresql://svc:pa%40ss-w0rd@127.0.0.1:{port}/events"])
    err = capsys.readouterr().err
    assert code == 2 and "ENCORE_SERVING_EVENT_STORE postgresql://svc:****@127.0.0.1" in err
    assert "pa%40ss-w0rd" not in err and "pa@ss-w0rd" not in err


# ------------------------------------------------------------------ reload


@pytest.fixture
def reload_registry(registry: Registry) -> Registry:
    """A model of its own (same run) so moving its alias cannot disturb other tests."""
    name = f"encore-reload-{time.monotonic_ns()}"
    client = MlflowClient(tracking_uri=registry.uri)
    mlflow.set_tracking_uri(registry.uri)
    version = register_run_model(registry.run_id, name, client=client, alias=CHAMPION)
    return Registry(registry.uri, name, registry.run_id, str(version.version), registry.bundle, registry.tmp)


def test_reload_switches_to_the_new_champion_without_dropping_requests(reload_registry: Registry,
                                                                       tmp_path: Path) -> None:
    reg = reload_registry
    client = MlflowClient(tracking_uri=reg.uri)
    with TestClient(create_app(settings_for(reg, tmp_path))) as service:
        assert service.get("/health").json()["model"]["version"] == reg.version
        assert service.post("/admin/reload").status_code == 401
        assert service.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 401
        other = service.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"},
                             json={"model_name": "someone-elses-model"})
        assert other.status_code == 403 and "only the configured model" in other.json()["detail"]

        new = register_run_model(reg.run_id, reg.name, client=client, alias="")
        client.set_registered_model_alias(reg.name, CHAMPION, new.version)
        statuses: list[int] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                statuses.append(service.get("/recommendations/2").status_code)

        worker = threading.Thread(target=hammer)
        worker.start()
        try:
            response = service.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        finally:
            stop.set()
            worker.join(timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["model"]["version"] == str(new.version)
        assert service.get("/health").json()["model"]["version"] == str(new.version)
        assert statuses and set(statuses) == {200}


def test_failed_reload_keeps_the_old_model_serving(reload_registry: Registry, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    reg = reload_registry
    client = MlflowClient(tracking_uri=reg.uri)
    broken = client.create_model_version(reg.name, source=str(tmp_path / "no-model-here"), run_id=None)
    with TestClient(create_app(settings_for(reg, tmp_path))) as service:
        client.set_registered_model_alias(reg.name, CHAMPION, broken.version)
        with caplog.at_level("ERROR", logger="encore.serving"):
            response = service.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 502
        assert f"still serving version {reg.version}" in response.json()["detail"]
        health = service.get("/health").json()
        assert health["status"] == "degraded" and health["model"]["version"] == reg.version
        assert health["last_reload"]["ok"] is False and health["last_error"]
        assert any("failed" in record.getMessage() for record in caplog.records)
        assert len(items_of(service.get("/recommendations/2"))) == 10


def test_periodic_alias_check_follows_the_champion(reload_registry: Registry, tmp_path: Path) -> None:
    reg = reload_registry
    client = MlflowClient(tracking_uri=reg.uri)
    with TestClient(create_app(settings_for(reg, tmp_path, reload_interval_seconds=0.2))) as service:
        new = register_run_model(reg.run_id, reg.name, client=client, alias=CHAMPION)
        deadline = time.monotonic() + 60
        while service.get("/health").json()["model"]["version"] != str(new.version):
            assert time.monotonic() < deadline, "the poller did not switch to the new champion"
            time.sleep(0.2)


# ------------------------------------------------------------------ a real server process


def test_real_uvicorn_server_on_loopback(registry: Registry, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENCORE_SERVING_", "MLFLOW_"))}
    env |= {"ENV_FILE": str(tmp_path / "absent.env"), "ENCORE_SERVING_MODEL_NAME": registry.name}
    cmd = [sys.executable, "-m", "encore.serving", "--port", str(port), "--tracking-uri", registry.uri,
           "--event-store", f"sqlite:///{tmp_path / 'events.db'}"]
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                with urllib.request.urlopen(f"{base}/ready", timeout=2) as response:
                    if json.load(response)["ready"]:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.3)
        request = urllib.request.Request(f"{base}/events", data=json.dumps({"user_id": "2", "item_id": "289"}).encode(),
                                         headers={"content-type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response) == {"accepted": 1}
        with urllib.request.urlopen(f"{base}/recommendations/2?k=10", timeout=10) as response:
            body = json.load(response)
        assert len(body["items"]) == 10 and body["items"][0]["source"] == "online"
        assert "289" not in [entry["item_id"] for entry in body["items"]]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        log.close()
    # uvicorn shuts down gracefully, then re-raises the signal so the parent sees it
    assert code in (0, -signal.SIGTERM) and "Application shutdown complete" in (tmp_path / "server.log").read_text()


# ------------------------------------------------------------------ the SQLite store


def test_sqlite_group_commit_keeps_every_batch_and_fails_a_bad_one_alone(tmp_path: Path) -> None:
    store = SQLiteEventStore(tmp_path / "events.db", history_size=1000)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        for n in range(30):
            try:
                if worker == 0 and n == 7:  # one bad batch among concurrent good ones
                    store.add([Listen("shared", "ok-but-rolled-back", 1.0), Listen("shared", None, 2.0)])  # type: ignore[arg-type]
                else:
                    store.add([Listen("shared", f"w{worker}-{n}", float(n))])
            except sqlite3.IntegrityError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    stored = store.recent("shared", 1000)
    store.close()
    assert len(errors) == 1
    assert len(stored) == 6 * 30 - 1 and "ok-but-rolled-back" not in stored
    reopened = SQLiteEventStore(tmp_path / "events.db", history_size=1000)
    assert len(reopened.recent("shared", 1000)) == 179
    reopened.close()


# ------------------------------------------------------------------ the blend, unit level


def test_interleave_rule_on_small_lists() -> None:
    online = Ranked(np.array([5, 1, 6, 7]), np.array([4.0, 3, 2, 1]), "online")
    offline = Ranked(np.array([1, 2, 3, 4]), np.array([1.0, 0.9, 0.8, 0.7]), "ranker")
    popular = Ranked(np.array([9, 8, 1, 2, 10, 11]), np.arange(6, 0, -1, dtype=float), "popular")
    out = interleave(online, offline, popular, 8, 0.5, exclude=np.array([6]))
    assert out.items.tolist() == [5, 1, 7, 2, 3, 4, 9, 8]  # 1 once, 6 skipped, then the popular fill
    assert out.sources == ["online", "ranker", "online", "ranker", "ranker", "ranker", "popular", "popular"]
    third = interleave(online, offline, popular, 4, 1 / 3, exclude=np.array([], dtype=int))
    assert third.sources == ["online", "ranker", "ranker", "online"]
    assert interleave(online, offline, popular, 3, 0.0, exclude=np.array([1])).items.tolist() == [2, 3, 4]


def test_neighbour_scores_sum_similarities_and_drop_history() -> None:
    # item 0 -> (1: .5, 2: .4); item 3 -> (2: .3, 0: .9)
    indptr = np.array([0, 2, 2, 2, 4])
    neighbours = np.array([1, 2, 2, 0])
    similarity = np.array([0.5, 0.4, 0.3, 0.9])
    ranked = neighbour_scores(indptr, neighbours, similarity, np.array([0, 3]), 10, "foldin")
    assert ranked.items.tolist() == [2, 1] and np.allclose(ranked.scores, [0.7, 0.5])


def test_the_env_template_lists_every_service_setting_at_its_default() -> None:
    """A new setting must reach .env_template (where operators look), with the value the code uses."""
    from encore.config.envfile import env_file_values
    from encore.serving.settings import ENV_PREFIX, ServingSettings, load_serving_settings
    from tests.conftest import REPO_ROOT

    listed = {key.removeprefix(ENV_PREFIX).lower() for key in env_file_values(REPO_ROOT / ".env_template", {})
              if key.startswith(ENV_PREFIX)}
    own = set(ServingSettings.model_fields) - {"tracking_uri"}  # MLFLOW_TRACKING_URI, shared with the pipeline
    assert listed == own, own ^ listed
    from_template = load_serving_settings(REPO_ROOT / ".env_template", environ={})
    assert from_template.model_dump() == ServingSettings().model_dump()
