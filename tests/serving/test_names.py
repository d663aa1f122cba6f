"""Item names beside item ids: the pyfunc's answers and the service's responses."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from fastapi.testclient import TestClient

from encore.serving.app import ModelHolder, create_app
from encore.serving.blended_model import ServedModel
from encore.serving.pyfunc import ITEM_COLUMNS, USER_COLUMNS, EncoreServingModel, write_bundle
from encore.serving.settings import ServingSettings

ITEMS = [str(i) for i in range(1, 9)]
NAMES = {"1": "Björk", "2": "Сплин", "3": "Radiohead", "4": "", "5": "Mogwai", "6": "Low", "7": "Can", "8": "Air"}


def bundle(tmp: Path) -> Path:
    return write_bundle(
        tmp / "bundle",
        recommendations=pd.DataFrame({"user_id": ["u1"] * 3, "item_id": ["1", "2", "4"], "rank": [1, 2, 3],
                                      "score": [0.9, 0.8, 0.7]}),
        popular=pd.DataFrame({"item_id": ITEMS[::-1], "score": [8.0 - i for i in range(8)]}),
        similar_items=pd.DataFrame({"item_id": ["3", "3"], "similar_item_id": ["5", "6"], "score": [0.5, 0.4],
                                    "rank": [1, 2]}),
        # item 9 is in no table: a name for an item nobody is served costs nothing
        items=pd.DataFrame({"item_id": [*ITEMS, "9"], "name": [*NAMES.values(), "unused"]}),
    )


def test_pyfunc_answers_carry_the_item_name(tmp_path: Path) -> None:
    model = EncoreServingModel().load_bundle(bundle(tmp_path))
    users = model.predict(None, pd.DataFrame({"user_id": ["u1", "stranger"], "k": [4, 2]}))
    assert list(users.columns) == USER_COLUMNS
    assert users["name"].tolist() == [NAMES[i] for i in users["item_id"]]
    assert users["name"].iloc[:3].tolist() == ["Björk", "Сплин", ""]  # no name in the data: empty, not NaN
    similar = model.predict(None, pd.DataFrame({"item_id": ["3"], "k": [3]}))
    assert list(similar.columns) == ITEM_COLUMNS
    assert similar["name"].tolist() == [NAMES[i] for i in similar["similar_item_id"]]
    assert similar["name"].iloc[:2].tolist() == ["Mogwai", "Low"]


def test_service_responses_carry_the_item_name(tmp_path: Path) -> None:
    settings = ServingSettings(event_store=f"sqlite:///{tmp_path / 'events.db'}", admin_token="adm1n-t0ken")
    holder = ModelHolder(settings, client=object())
    holder.current = ServedModel.from_tables(EncoreServingModel().load_bundle(bundle(tmp_path)),
                                             name="encore-ranker", version="1", run_id="r1")
    with TestClient(create_app(settings, holder=holder)) as client:
        items = client.get("/recommendations/u1", params={"k": 4}).json()["items"]
        assert [(e["item_id"], e["name"]) for e in items[:3]] == [("1", "Björk"), ("2", "Сплин"), ("4", "")]
        assert all(e["name"] == NAMES[e["item_id"]] for e in items)
        similar = client.get("/similar/3", params={"k": 2}).json()
        assert similar["name"] == "Radiohead"
        assert [(e["item_id"], e["name"]) for e in similar["items"]] == [("5", "Mogwai"), ("6", "Low")]
