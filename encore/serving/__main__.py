"""``python -m encore.serving``: start the recommendation service with uvicorn.

Settings: ``ENCORE_SERVING_*`` from the environment or ``.env`` (``.env_template``); the flags
below override them. One worker process: requests are served from a thread pool, and the model
indexes are read-only, so a second worker would only double the memory on 2 cores.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from encore.config.validation import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m encore.serving", description=__doc__.split("\n")[0])
    parser.add_argument("--host", help="interface to bind (default ENCORE_SERVING_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default ENCORE_SERVING_PORT or 8000)")
    parser.add_argument("--model-name", help="registered model (default ENCORE_SERVING_MODEL_NAME or encore-ranker)")
    parser.add_argument("--model-alias", help="alias to serve (default champion)")
    parser.add_argument("--tracking-uri", help="default MLFLOW_TRACKING_URI, else the local store mlruns/mlflow.db")
    parser.add_argument("--event-store", help="sqlite:///path or postgresql://... (default ENCORE_SERVING_EVENT_STORE)")
    parser.add_argument("--env-file", help="settings file (default $ENV_FILE, else .env in the repository)")
    parser.add_argument("--access-log", action="store_true", help="log every request (off: it costs latency)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from encore.serving.settings import load_serving_settings

    try:
        settings = load_serving_settings(args.env_file, host=args.host, port=args.port, model_name=args.model_name,
                                         model_alias=args.model_alias, tracking_uri=args.tracking_uri,
                                         event_store=args.event_store)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import uvicorn

    from encore.serving.app import create_app
    from encore.serving.events import open_store
    from encore.tracking.client import mask_text, mask_uri

    shown = mask_uri(settings.event_store)
    try:  # before uvicorn: a store that cannot be opened is one clear error, not a traceback
        store = open_store(settings.event_store, settings.sqlite_path(), settings.history_size)
    except Exception as exc:  # sqlite3 / psycopg2 errors: the message says what failed
        print(f"error: ENCORE_SERVING_EVENT_STORE {shown}: {mask_text(str(exc).strip(), settings.secrets())}",
              file=sys.stderr)
        return 2
    logging.getLogger("encore.serving").info("event store %s", shown)
    uvicorn.run(create_app(settings, store=store), host=settings.host, port=settings.port, workers=1,
                access_log=args.access_log, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
