"""The FastAPI application: endpoints, the model holder (load, reload, alias polling).

:func:`create_app` builds an app from :class:`~encore.serving.settings.ServingSettings`; its
lifespan opens the event store and loads ``models:/<name>@<alias>``. A failed start-up load
does not stop the process: ``/ready`` stays false (503) and ``/health`` says why, so an
orchestrator keeps it out of rotation until a reload succeeds.

Reload swaps one attribute (:attr:`ModelHolder.current`): a request reads it once and finishes
on the object it got, so in-flight requests are never dropped or mixed between versions.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from encore.serving.blended_model import ModelLoadError, Recommendation, ServedModel, load_version, resolve_version
from encore.serving.events import EventStore, Feedback, Listen, open_store
from encore.serving.settings import ServingSettings
from encore.tracking.client import mask_text

log = logging.getLogger("encore.serving")


class ModelHolder:
    """The served model and the outcome of the latest load attempt."""

    def __init__(self, settings: ServingSettings, client: Any = None) -> None:
        self.settings = settings
        self._client = client
        self.current: ServedModel | None = None
        self.last_error: str | None = None
        self.last_attempt: dict[str, Any] | None = None
        self._failed_version: str | None = None
        self._lock = threading.Lock()  # one load at a time; requests never take it
        self._secrets: list[str] | None = None

    def mask(self, text: str) -> str:
        """``text`` with every credential masked (URI passwords, ``?password=``, known secrets):
        errors reach ``/health``, 503 bodies and the log."""
        if self._secrets is None:
            self._secrets = self.settings.secrets()
        return mask_text(text, self._secrets)

    @property
    def client(self) -> Any:
        if self._client is None:
            from encore.tracking.client import cli_client

            self._client = cli_client(self.settings.tracking_uri)
        return self._client

    def reload(self, *, only_if_changed: bool = False) -> ServedModel | None:
        """Load the version the alias points at now; on failure keep the old model and raise.

        ``only_if_changed`` (the poller): do nothing when the alias still points at the served
        version, or at the version that failed last time (an explicit reload retries it).
        """
        name, alias = self.settings.model_name, self.settings.model_alias
        with self._lock:
            at = datetime.now(UTC).isoformat(timespec="seconds")
            try:
                target = resolve_version(self.client, name, alias)
            except ModelLoadError as exc:
                raise self._failed(at, exc) from None
            version = str(target.version)
            if only_if_changed and version in {self.current.version if self.current else None,
                                               self._failed_version}:
                return self.current
            try:
                served = load_version(name, version, target.run_id)
            except ModelLoadError as exc:
                self._failed_version = version
                raise self._failed(at, exc) from None
            self.current = served  # the atomic swap: requests that already read the old one finish on it
            self.last_error, self._failed_version = None, None
            self.last_attempt = {"at": at, "ok": True, "version": served.version}
            return served

    def _failed(self, at: str, exc: Exception) -> ModelLoadError:
        """Record a failed load; the error to raise, its credentials masked (its cause dropped:
        a traceback would print the unmasked message)."""
        message = self.mask(str(exc))
        log.error("loading models:/%s@%s failed (%s): %s", self.settings.model_name, self.settings.model_alias,
                  f"still serving version {self.current.version}" if self.current else "no model loaded", message)
        self.last_error = message
        self.last_attempt = {"at": at, "ok": False, "error": message}
        return ModelLoadError(message)


class EventIn(BaseModel):
    """One event; ``timestamp`` (ISO 8601 or UNIX seconds) defaults to the time of receipt.
    ``action``: ``play`` (a listen, the default), ``skip`` (recorded), ``dislike`` or ``block``
    (the item is never served to this user again)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    user_id: str = Field(min_length=1, max_length=256)
    item_id: str = Field(min_length=1, max_length=256)
    timestamp: datetime | None = None
    action: Literal["play", "skip", "dislike", "block"] = "play"


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1)


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_name: str | None = None


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON (numbers must be finite)")


async def event_body(request: Request) -> EventBatch | EventIn:
    """The body of ``POST /events``, validated as the shape it has: an object with ``events`` is
    a batch, anything else one event, so a 422 names the fields of that shape only. Strict JSON:
    ``NaN`` and ``Infinity`` (which Python's parser accepts) are refused."""
    raw = await request.body()
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise RequestValidationError([{"loc": ("body",), "msg": f"invalid JSON ({exc})"}]) from None
    except ValueError as exc:
        raise RequestValidationError([{"loc": ("body",), "msg": str(exc)}]) from None
    shape = EventBatch if isinstance(data, dict) and "events" in data else EventIn
    try:
        return shape.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**error, "loc": ("body", *error["loc"])}
                                      for error in exc.errors()]) from None


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.get("loc", ())).lstrip(".")
        parts.append(f"{where}: {error.get('msg')}")
    return "; ".join(parts[:5]) + (f" (and {len(parts) - 5} more)" if len(parts) > 5 else "")


def create_app(settings: ServingSettings, *, store: EventStore | None = None, holder: ModelHolder | None = None,
               client: Any = None) -> FastAPI:
    """The service. ``store``/``holder``/``client`` are injectable (tests); by default they come
    from ``settings``."""
    holder = holder or ModelHolder(settings, client)
    state: dict[str, Any] = {"store": store, "stop": threading.Event()}

    def poll_alias() -> None:
        while not state["stop"].wait(settings.reload_interval_seconds):
            with contextlib.suppress(ModelLoadError):  # logged and reported at /health by reload()
                holder.reload(only_if_changed=True)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state["store"] is None:
            state["store"] = open_store(settings.event_store, settings.sqlite_path(), settings.history_size)
        if holder.current is None:
            with contextlib.suppress(ModelLoadError):  # the service starts unready; /health says why
                holder.reload()
        poller = None
        if settings.reload_interval_seconds > 0:
            poller = threading.Thread(target=poll_alias, name="encore-alias-poll", daemon=True)
            poller.start()
        try:
            yield
        finally:
            state["stop"].set()
            if poller is not None:
                poller.join(timeout=5)
            state["store"].close()

    api_token = settings.api_token.get_secret_value().encode() if settings.api_token else b""
    if not api_token and not settings.loopback():
        log.warning("the data endpoints on %s are open to anyone who reaches it (ENCORE_SERVING_ALLOW_NO_TOKEN): "
                    "set ENCORE_SERVING_API_TOKEN unless something in front authenticates", settings.host)

    def data_access(authorization: Annotated[str | None, Header()] = None) -> None:
        """With ``api_token`` set, the data endpoints need ``Authorization: Bearer <token>``."""
        if api_token and not hmac.compare_digest(_bearer(authorization).encode(), api_token):
            raise HTTPException(401, "missing or wrong bearer token (ENCORE_SERVING_API_TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="Encore recommendations", lifespan=lifespan)
    app.state.holder = holder
    app.state.settings = settings

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _validation_message(exc)})

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)

    def model_or_503() -> ServedModel:
        model = holder.current
        if model is None:
            raise HTTPException(503, f"no model loaded yet: {holder.last_error or 'loading'}")
        return model

    k_query = Query(10, ge=1, le=settings.max_k, description="list length")

    @app.get("/health")
    def health() -> dict[str, Any]:
        model = holder.current
        return {"status": "ok" if model is not None and holder.last_error is None else "degraded",
                "model": model.info() if model is not None else None,
                "configured": {"name": settings.model_name, "alias": settings.model_alias},
                "last_reload": holder.last_attempt, "last_error": holder.last_error,
                "event_store": "sqlite" if settings.sqlite_path() is not None else "postgresql"}

    @app.get("/ready")
    def ready() -> JSONResponse:
        ok = holder.current is not None
        return JSONResponse(status_code=200 if ok else 503, content={"ready": ok})

    @app.get("/recommendations/{user_id}", dependencies=[Depends(data_access)])
    def recommendations(user_id: str, k: int = k_query) -> dict[str, Any]:
        model = model_or_503()  # read once: a reload mid-request does not affect this request
        recent = state["store"].recent(user_id, settings.history_size)
        index = model.item_index
        history = np.fromiter((index[i] for i in recent if i in index), dtype=np.int64)
        rejected = np.fromiter((index[i] for i in state["store"].rejected(user_id) if i in index), dtype=np.int64)
        rec = model.recommend(user_id, history, k, recent_listens=settings.recent_listens,
                              online_share=settings.online_share, foldin_min_listens=settings.foldin_min_listens,
                              exclude_heard=settings.exclude_heard, rejected=rejected)
        return {"user_id": user_id, "model_version": model.version, "known_user": user_id in model.user_index,
                "recent_listens": len(recent),
                "items": items_json(rec)}

    @app.get("/similar/{item_id}", dependencies=[Depends(data_access)])
    def similar(item_id: str, k: int = k_query) -> dict[str, Any]:
        model = model_or_503()
        item = model.item_index.get(item_id)
        if item is None:
            raise HTTPException(404, f"unknown item_id '{item_id}' (not in model version {model.version})")
        rec = model.similar(item, k)
        return {"item_id": item_id, "name": model.item_name(item), "model_version": model.version,
                "items": items_json(rec)}

    @app.post("/events", dependencies=[Depends(data_access)])
    def post_events(body: Annotated[EventBatch | EventIn, Depends(event_body)]) -> dict[str, Any]:
        events = body.events if isinstance(body, EventBatch) else [body]
        if len(events) > settings.max_batch:
            raise HTTPException(413, f"batch of {len(events)} events exceeds the limit of {settings.max_batch}")
        model = model_or_503()
        unknown = [(n, e.item_id) for n, e in enumerate(events) if e.item_id not in model.item_index]
        if unknown:
            listed = ", ".join(f"events[{n}].item_id '{item}'" for n, item in unknown[:5])
            raise HTTPException(422, f"unknown item ids (not in model version {model.version}): {listed}"
                                     + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
                                     + "; nothing was stored")
        now = datetime.now(UTC).timestamp()
        listens = [Listen(e.user_id, e.item_id, _epoch(e.timestamp) if e.timestamp else now) for e in events]
        future = [(n, e.timestamp) for n, e, listen in zip(range(len(events)), events, listens, strict=True)
                  if listen.timestamp > now + settings.max_future_seconds]
        if future:
            where = "events[{}].timestamp" if isinstance(body, EventBatch) else "timestamp"
            listed = ", ".join(f"{where.format(n)} {value.isoformat()}" for n, value in future[:5])
            raise HTTPException(422, f"{listed}{f' and {len(future) - 5} more' if len(future) > 5 else ''}: "
                                     f"more than {settings.max_future_seconds:g} s ahead of the server's clock "
                                     f"({datetime.fromtimestamp(now, UTC).isoformat(timespec='seconds')}); "
                                     "nothing was stored")
        feedback = [Feedback(e.user_id, e.item_id, e.action, listen.timestamp)
                    for e, listen in zip(events, listens, strict=True) if e.action != "play"]
        if feedback:  # committed before the 2xx below; plays go to the bounded listen history
            state["store"].add_feedback(feedback)
        plays = [n for n, e in enumerate(events) if e.action == "play"]
        listens = [listens[n] for n in plays]
        # Positions in the request of the plays the store's trim removed at once.
        trimmed = [plays[n] for n in state["store"].add(listens)] if listens else []
        answer: dict[str, Any] = {"accepted": len(feedback) + len(listens) - len(trimmed)}
        if trimmed:  # stored and removed by the same transaction: not acknowledged as kept
            answer["not_kept"] = trimmed
            answer["detail"] = (f"{len(trimmed)} event(s) older than their user's newest {settings.history_size} "
                                "listens were not kept")
        return answer

    @app.post("/admin/reload")
    def admin_reload(authorization: Annotated[str | None, Header()] = None,
                     body: ReloadRequest | None = None) -> JSONResponse:
        token = settings.admin_token.get_secret_value() if settings.admin_token else ""
        if not token:
            raise HTTPException(403, "reload is disabled: set ENCORE_SERVING_ADMIN_TOKEN")
        if not hmac.compare_digest(_bearer(authorization).encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
        if body is not None and body.model_name not in (None, settings.model_name):
            raise HTTPException(403, f"only the configured model '{settings.model_name}' can be loaded, "
                                     f"not '{body.model_name}'")
        try:
            served = holder.reload()
        except ModelLoadError as exc:
            current = holder.current
            return JSONResponse(status_code=502, content={
                "detail": f"reload failed, {'still serving version ' + current.version if current else 'no model'}: "
                          f"{exc}", "model": current.info() if current else None})
        return JSONResponse(status_code=200, content={"reloaded": True, "model": served.info()})

    return app


class BodyLimit:
    """Refuse a request whose body exceeds ``limit`` bytes (413), counting what arrives.

    A declared Content-Length over the limit is refused before a byte is read. A body without
    one (``Transfer-Encoding: chunked``) is read here, chunk by chunk, and refused as soon as
    the bytes received pass the limit; what was read (at most ``limit`` bytes) is then handed
    to the application as one message. The 413 closes the connection, so the rest of an
    oversized body is never read into memory.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` costs a task and a stream
    per request, which shows in the latency of every endpoint.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def _refuse(self, scope: dict[str, Any], receive: Any, send: Any, size: str) -> None:
        response = JSONResponse(status_code=413, headers={"connection": "close"}, content={
            "detail": f"request body of {size} bytes exceeds the limit of {self.limit} bytes"})
        await response(scope, receive, send)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length, chunked = None, False
        for key, value in scope["headers"]:
            if key == b"content-length":
                length = value.decode("latin-1")
            elif key == b"transfer-encoding":
                chunked = True
        if not chunked:
            if length is not None and (not length.isdigit() or int(length) > self.limit):
                await self._refuse(scope, receive, send, length)
                return
            await self.app(scope, receive, send)  # the server reads no more than Content-Length
            return
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: the app sees that
                replay = [message]
                break
            received += len(message.get("body", b""))
            if received > self.limit:
                await self._refuse(scope, receive, send, f"more than {received}")
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
                break

        async def replayed() -> dict[str, Any]:
            return replay.pop() if replay else await receive()

        await self.app(scope, replayed, send)


def items_json(rec: Recommendation) -> list[dict[str, Any]]:
    """A list as the API returns it: ``item_id``, its display ``name``, ``score``, ``source``."""
    return [{"item_id": i, "name": n, "score": s, "source": src}
            for i, n, s, src in zip(rec.item_ids, rec.names, rec.scores, rec.sources, strict=True)]


def _bearer(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; "" for any other scheme or none."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _epoch(value: datetime) -> float:
    """UNIX seconds; a timestamp without a zone is taken as UTC."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
