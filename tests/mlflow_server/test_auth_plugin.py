"""The immutable-version rule's lookups: a version's storage location is asked once per process.

The rule itself (every write form refused, the S3 object unchanged) is tested on the real auth
server in ``tests/integration/test_server_auth.py``; here only what it costs the registry store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from encore.mlflow_server import auth_plugin


class _Page(list):
    """One page of search results; the last page has no token."""

    token: str | None = None


@dataclass
class _Store:
    """The two registry-store calls the rule makes, counted."""

    versions: list[SimpleNamespace]
    uri_calls: list[tuple[str, str]] = field(default_factory=list)

    def search_model_versions(self, max_results: int, page_token: str | None) -> _Page:
        return _Page(self.versions)

    def get_model_version_download_uri(self, name: str, version: str) -> str:
        self.uri_calls.append((name, version))
        return f"mlflow-artifacts:/1/models/m-{name}-{version}/artifacts"


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> _Store:
    monkeypatch.setattr(auth_plugin, "_DOWNLOAD_URIS", {})
    return _Store([SimpleNamespace(name="encore-ranker", version=v, source=f"models:/m-{v}") for v in (1, 2, 3)])


def _refusal(store: _Store, path: str) -> str | None:
    mlflow_auth = SimpleNamespace(_get_model_registry_store=lambda: store)
    return auth_plugin._registered_artifact_refusal(path, "pipeline", mlflow_auth)


def test_each_version_location_is_looked_up_once(store: _Store) -> None:
    for _ in range(5):
        assert _refusal(store, "1/runs/abc/artifacts/plot.png") is None
    assert sorted(store.uri_calls) == [("encore-ranker", 1), ("encore-ranker", 2), ("encore-ranker", 3)]


def test_cached_locations_still_refuse_writes_under_a_version(store: _Store) -> None:
    _refusal(store, "1/runs/abc/artifacts/plot.png")
    refusal = _refusal(store, "1/models/m-encore-ranker-2/artifacts/./model.cb")
    assert refusal is not None and "version 2" in refusal and "immutable" in refusal
    assert len(store.uri_calls) == 3


def test_a_new_version_is_looked_up_when_it_appears(store: _Store) -> None:
    _refusal(store, "x")
    store.versions.append(SimpleNamespace(name="encore-ranker", version=4, source="models:/m-4"))
    assert _refusal(store, "1/models/m-encore-ranker-4/artifacts/MLmodel") is not None
    assert store.uri_calls[-1] == ("encore-ranker", 4) and len(store.uri_calls) == 4
