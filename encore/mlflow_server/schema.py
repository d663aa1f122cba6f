"""The tracking database's schema: where it stands against the installed MLflow, and upgrading it.

start.sh runs ``python -m encore.mlflow_server db-upgrade`` before every start: an empty
database is left to ``mlflow server`` (which creates the schema itself), one behind is
upgraded, one ahead (upgraded by a newer MLflow) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from encore.mlflow_server.settings import ServerConfigError, ServerSettings, backend_store_uri


@dataclass(frozen=True)
class SchemaStatus:
    """Alembic revision of the database vs the installed MLflow's head revision."""

    state: Literal["empty", "current", "behind", "unknown"]
    current: str | None
    head: str


def schema_status(uri: str) -> SchemaStatus:
    """Compare the database's alembic revision with the installed MLflow's migration head.

    ``empty``: no MLflow tables (``mlflow server`` creates them itself on start);
    ``behind``: an older known revision (needs ``mlflow db upgrade``); ``unknown``: a
    revision this MLflow does not know (the database was upgraded by a newer MLflow).
    """
    from alembic.script import ScriptDirectory
    from mlflow.store.db import utils as db_utils

    head = db_utils._get_latest_schema_revision()
    engine = db_utils.create_sqlalchemy_engine_with_retry(uri)
    try:
        if db_utils._is_empty_database(engine):
            return SchemaStatus("empty", None, head)
        current = db_utils._get_schema_version(engine)
    finally:
        engine.dispose()
    if current == head:
        return SchemaStatus("current", current, head)
    script = ScriptDirectory.from_config(db_utils._get_alembic_config(db_url=""))
    known = {rev.revision for rev in script.walk_revisions()}
    return SchemaStatus("behind" if current in known else "unknown", current, head)


def upgrade_schema_if_needed(settings: ServerSettings) -> str:
    """Run ``mlflow db upgrade`` only when the schema is behind; return what was done.

    Runs the ``mlflow db upgrade`` click command in-process so that the URI, password
    included, never appears in a process list.
    """
    uri = backend_store_uri(settings)
    status = schema_status(uri)
    if status.state == "empty":
        return f"database is empty: `mlflow server` will create the schema (revision {status.head})"
    if status.state == "current":
        return f"database schema is current (revision {status.head})"
    if status.state == "unknown":
        raise ServerConfigError(
            f"database schema revision {status.current} is unknown to this MLflow (head {status.head}): "
            "it was probably upgraded by a newer MLflow; install that version instead of downgrading"
        )
    from mlflow.db import upgrade

    print(f"database schema is behind ({status.current} -> {status.head}): running mlflow db upgrade")
    upgrade.main(args=[uri], prog_name="mlflow db upgrade", standalone_mode=False)
    after = schema_status(uri)
    if after.state != "current":
        raise ServerConfigError(f"mlflow db upgrade left the schema at {after.current}, expected {after.head}")
    return f"database schema upgraded to revision {after.head}"
