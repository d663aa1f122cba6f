"""The service's PostgreSQL event store against a real throwaway cluster (the ``postgres``
fixture): durable, bounded, all-or-nothing batches, safe under concurrent writers, and the
service's /events -> restart -> /recommendations path on it."""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from encore.serving.app import ModelHolder, create_app
from encore.serving.blended_model import ServedModel
from encore.serving.events import TABLE, Feedback, Listen, PostgresEventStore
from encore.serving.pyfunc import EncoreServingModel
from encore.serving.settings import ServingSettings
from tests.integration.itest_support import Postgres


def dsn(pg: Postgres) -> str:
    # The fixture's role name and password hold @ : / # %: percent-encode them in the URI.
    return (f"postgresql://{quote(pg.user, safe='')}:{quote(pg.password, safe='')}@127.0.0.1:{pg.port}/"
            f"{quote(pg.db, safe='')}")


@pytest.fixture
def store(postgres: Postgres) -> PostgresEventStore:
    s = PostgresEventStore(dsn(postgres), history_size=4)
    with s._connection() as conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {TABLE}")
    yield s
    s.close()


def test_events_are_kept_newest_first_bounded_and_durable(store: PostgresEventStore, postgres: Postgres) -> None:
    store.add([Listen("u1", f"a{n}", 1000.0 + n) for n in range(6)] + [Listen("u2", "a9", 5.0)])
    assert store.recent("u1", 10) == ["a5", "a4", "a3", "a2"]
    assert store.recent("u2", 10) == ["a9"]
    store.close()
    again = PostgresEventStore(dsn(postgres), history_size=4)  # a restarted service
    try:
        assert again.recent("u1", 2) == ["a5", "a4"]
        with again._connection() as conn, conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {TABLE} WHERE user_id = 'u1'")
            assert cur.fetchone()[0] == 4  # older listens are deleted, not only hidden
    finally:
        again.close()


def test_rejections_are_kept_for_good_and_survive_a_restart(store: PostgresEventStore, postgres: Postgres) -> None:
    store.add_feedback([Feedback("r1", "a1", "dislike", 1.0), Feedback("r1", "a2", "skip", 2.0),
                        Feedback("r1", "a3", "block", 3.0), Feedback("r2", "a4", "dislike", 4.0)])
    store.add([Listen("r1", f"a{n}", 10.0 + n) for n in range(8)])  # listens trimmed to 4; rejections not
    store.close()
    again = PostgresEventStore(dsn(postgres), history_size=4)  # a restarted service
    try:
        assert again.rejected("r1") == ["a1", "a3"]  # a skip is recorded, not a rejection
        assert again.rejected("r2") == ["a4"] and again.rejected("nobody") == []
    finally:
        again.close()


def test_a_failing_batch_stores_nothing(store: PostgresEventStore) -> None:
    with pytest.raises(Exception, match="null value"):
        store.add([Listen("u3", "a1", 1.0), Listen("u3", None, 2.0)])  # type: ignore[arg-type]
    assert store.recent("u3", 10) == []


def test_concurrent_writers_lose_nothing_acknowledged(store: PostgresEventStore, postgres: Postgres) -> None:
    big = PostgresEventStore(dsn(postgres), history_size=1000, max_connections=4)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for n in range(25):
                big.add([Listen("shared", f"w{worker}-{n}", float(n))])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]  # more threads than connections
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    big.close()
    assert not errors
    assert len(set(store.recent("shared", 1000))) == 200


def test_service_on_postgres_keeps_events_across_restarts(postgres: Postgres, toy_bundle: Path,
                                                          store: PostgresEventStore) -> None:
    settings = ServingSettings(event_store=dsn(postgres), history_size=10)

    def app() -> TestClient:
        holder = ModelHolder(settings)
        # The toy bundle indexed by the service's own code; the registry path is tested in tests/test_serving.py.
        holder.current = ServedModel.from_tables(EncoreServingModel().load_bundle(toy_bundle), name="toy",
                                                 version="1", run_id=None)
        return TestClient(create_app(settings, holder=holder))

    with app() as client:
        assert client.post("/events", json={"user_id": "u1", "item_id": "a0"}).json() == {"accepted": 1}
        assert client.post("/events", json={"user_id": "u1", "item_id": "nope"}).status_code == 422
    with app() as client:
        body = client.get("/recommendations/u1", params={"k": 6}).json()
    assert body["recent_listens"] == 1
    items = [entry["item_id"] for entry in body["items"]]
    sources = [entry["source"] for entry in body["items"]]
    assert "a0" not in items and len(set(items)) == 6
    assert items[:2] == ["a5", "a10"] and sources[:2] == ["online", "ranker"]  # a0 -> a5, a6, a7 similar
