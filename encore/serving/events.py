"""The event store: a bounded recent history of listens per user, and every skip, dislike and
block (never trimmed: a rejected item stays rejected), surviving restarts.

Two backends with one contract (:class:`EventStore`):

* :class:`SQLiteEventStore` (default): one file, WAL journal (readers never block the
  writer), ``synchronous=FULL`` (a commit is on disk when it returns), one connection per
  thread (sqlite3 connections must not be shared across threads without care), and group
  commit (concurrent requests share one transaction and one fsync; see ``add``).
* :class:`PostgresEventStore` (``ENCORE_SERVING_EVENT_STORE=postgresql://...``): the same
  database family as the tracking server, a small thread-safe psycopg2 pool.

``add`` writes a batch in one transaction and trims each of its users to the newest
``history_size`` listens in the same transaction; it returns only after the commit, so an
event the API acknowledged (2xx) is durable, and a failed batch leaves nothing behind. It
returns the positions of the batch's events that the same transaction's trim removed (older
than their user's newest ``history_size``): the API does not count those as accepted.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

TABLE = "encore_listen_events"
FEEDBACK_TABLE = "encore_feedback_events"
"""Skips, dislikes and blocks: never trimmed (a rejection holds for good)."""
REJECTING = ("dislike", "block")
"""The actions after which an item is never served to that user again."""


@dataclass(frozen=True)
class Listen:
    """One acknowledged listen: raw ids and a UNIX timestamp (seconds)."""

    user_id: str
    item_id: str
    timestamp: float


@dataclass(frozen=True)
class Feedback:
    """One acknowledged ``skip``, ``dislike`` or ``block`` (raw ids, UNIX seconds)."""

    user_id: str
    item_id: str
    action: str
    timestamp: float


class EventStore(Protocol):
    """What the service needs from a store."""

    def add(self, events: Sequence[Listen]) -> list[int]: ...

    def add_feedback(self, events: Sequence[Feedback]) -> None: ...

    def rejected(self, user_id: str) -> list[str]: ...

    def recent(self, user_id: str, limit: int) -> list[str]: ...

    def close(self) -> None: ...


# Newest first: by timestamp, then by arrival (id) for equal timestamps. One statement trims
# every user of a batch ({users} = the backend's "user_id in this list" condition).
_TRIM = ("DELETE FROM {t} WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER "
         "(PARTITION BY user_id ORDER BY ts DESC, id DESC) AS rn FROM {t} WHERE {users}) AS ranked "
         "WHERE rn > {p})")
_RECENT = "SELECT item_id FROM {t} WHERE user_id = {p} ORDER BY ts DESC, id DESC LIMIT {p}"
_FEEDBACK_TABLE = ("CREATE TABLE IF NOT EXISTS {t} (id {serial} PRIMARY KEY, user_id TEXT NOT NULL, "
                   "item_id TEXT NOT NULL, action TEXT NOT NULL, ts {real} NOT NULL)")
_FEEDBACK_INDEX = "CREATE INDEX IF NOT EXISTS {t}_user ON {t} (user_id, action)"
_INSERT_FEEDBACK = "INSERT INTO {t} (user_id, item_id, action, ts) VALUES ({p}, {p}, {p}, {p})"
_REJECTED = "SELECT DISTINCT item_id FROM {t} WHERE user_id = {p} AND action IN ({p}, {p}) ORDER BY item_id"


@dataclass
class _Ticket:
    """One request's batch waiting for a group commit."""

    events: list[Listen]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    ids: tuple[int, int] = (0, -1)
    """First and last row id the batch was inserted as (contiguous: one writer at a time)."""
    trimmed: list[int] = field(default_factory=list)


class SQLiteEventStore:
    """SQLite store (see the module docstring)."""

    def __init__(self, path: Path, history_size: int) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.history_size = history_size
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pending: list[_Ticket] = []
        self._pending_lock = threading.Lock()
        self._write_lock = threading.Lock()
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, "
            f"item_id TEXT NOT NULL, ts REAL NOT NULL);"
            f"CREATE INDEX IF NOT EXISTS {TABLE}_user_ts ON {TABLE} (user_id, ts, id);"
            + _FEEDBACK_TABLE.format(t=FEEDBACK_TABLE, serial="INTEGER", real="REAL") + ";"
            + _FEEDBACK_INDEX.format(t=FEEDBACK_TABLE) + ";"
        )

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def add(self, events: Sequence[Listen]) -> list[int]:
        """Store ``events`` durably (all or none), returning after the commit the positions of
        those the same transaction's trim removed.

        Group commit: each commit waits for an fsync (``synchronous=FULL``), so one transaction
        per request would cap writes at the disk's fsync rate. Requests that arrive while a
        commit is running queue their batch; the next writer commits every queued batch in one
        transaction (each in its own savepoint, so a bad batch fails alone) and wakes their
        requests only after COMMIT returned.
        """
        ticket = _Ticket(list(events))
        with self._pending_lock:
            self._pending.append(ticket)
        with self._write_lock:
            if not ticket.done.is_set():
                with self._pending_lock:
                    group, self._pending = self._pending, []
                self._commit(group)
        ticket.done.wait()
        if ticket.error is not None:
            raise ticket.error
        return ticket.trimmed

    def _commit(self, group: list[_Ticket]) -> None:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for ticket in group:
                    conn.execute("SAVEPOINT batch")
                    try:
                        conn.executemany(f"INSERT INTO {TABLE} (user_id, item_id, ts) VALUES (?, ?, ?)",
                                         [(e.user_id, e.item_id, e.timestamp) for e in ticket.events])
                        # AUTOINCREMENT under BEGIN IMMEDIATE: the batch's ids are contiguous
                        last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
                        ticket.ids = (last - len(ticket.events) + 1, last)
                        conn.execute("RELEASE batch")
                    except Exception as exc:  # this batch only: the others of the group still commit
                        conn.execute("ROLLBACK TO batch")
                        conn.execute("RELEASE batch")
                        ticket.error = exc
                users = json.dumps(sorted({e.user_id for t in group if t.error is None for e in t.events}))
                conn.execute(_TRIM.format(t=TABLE, p="?", users="user_id IN (SELECT value FROM json_each(?))"),
                             (users, self.history_size))
                for ticket in group:
                    if ticket.error is None and ticket.events:
                        first, last = ticket.ids
                        kept = {row[0] for row in conn.execute(
                            f"SELECT id FROM {TABLE} WHERE id BETWEEN ? AND ?", (first, last))}
                        ticket.trimmed = [n for n in range(len(ticket.events)) if first + n not in kept]
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except BaseException as exc:
            for ticket in group:
                ticket.error = ticket.error or exc
            raise
        finally:
            for ticket in group:
                ticket.done.set()

    def recent(self, user_id: str, limit: int) -> list[str]:
        rows = self._conn().execute(_RECENT.format(t=TABLE, p="?"), (user_id, limit)).fetchall()
        return [row[0] for row in rows]

    def add_feedback(self, events: Sequence[Feedback]) -> None:
        """Store ``events`` in one transaction, committed (on disk) when this returns."""
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_INSERT_FEEDBACK.format(t=FEEDBACK_TABLE, p="?"),
                                 [(e.user_id, e.item_id, e.action, e.timestamp) for e in events])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def rejected(self, user_id: str) -> list[str]:
        rows = self._conn().execute(_REJECTED.format(t=FEEDBACK_TABLE, p="?"), (user_id, *REJECTING)).fetchall()
        return [row[0] for row in rows]

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


class PostgresEventStore:
    """PostgreSQL store (see the module docstring)."""

    def __init__(self, dsn: str, history_size: int, max_connections: int = 8) -> None:
        from psycopg2.pool import ThreadedConnectionPool

        self.history_size = history_size
        self._pool = ThreadedConnectionPool(1, max_connections, dsn, connect_timeout=10)
        # Bounds concurrent borrowers to the pool size: psycopg2's pool raises instead of waiting.
        self._slots = threading.BoundedSemaphore(max_connections)
        with self._connection() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id BIGSERIAL PRIMARY KEY, user_id TEXT NOT NULL, "
                        f"item_id TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL)")
            cur.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_user_ts ON {TABLE} (user_id, ts, id)")
            cur.execute(_FEEDBACK_TABLE.format(t=FEEDBACK_TABLE, serial="BIGSERIAL", real="DOUBLE PRECISION"))
            cur.execute(_FEEDBACK_INDEX.format(t=FEEDBACK_TABLE))

    class _Borrowed:
        def __init__(self, store: PostgresEventStore) -> None:
            self.store = store

        def __enter__(self):  # -> psycopg2 connection, inside a transaction
            self.store._slots.acquire()
            try:
                self.conn = self.store._pool.getconn()
            except BaseException:
                self.store._slots.release()
                raise
            return self.conn

        def __exit__(self, exc_type, exc, tb) -> None:
            try:
                if exc_type is None:
                    self.conn.commit()
                else:
                    self.conn.rollback()
            finally:
                self.store._pool.putconn(self.conn, close=bool(self.conn.closed))
                self.store._slots.release()

    def _connection(self) -> PostgresEventStore._Borrowed:
        """A pooled connection whose transaction commits on success and rolls back on error."""
        return PostgresEventStore._Borrowed(self)

    def add(self, events: Sequence[Listen]) -> list[int]:
        from psycopg2.extras import execute_values

        with self._connection() as conn, conn.cursor() as cur:
            # RETURNING of a multi-row VALUES insert lists the rows in the VALUES order
            ids = [row[0] for row in execute_values(
                cur, f"INSERT INTO {TABLE} (user_id, item_id, ts) VALUES %s RETURNING id",
                [(e.user_id, e.item_id, e.timestamp) for e in events], page_size=len(events) or 1, fetch=True)]
            cur.execute(_TRIM.format(t=TABLE, p="%s", users="user_id = ANY(%s)") + " RETURNING id",
                        (sorted({e.user_id for e in events}), self.history_size))
            removed = {row[0] for row in cur.fetchall()}
        return [n for n, row_id in enumerate(ids) if row_id in removed]

    def recent(self, user_id: str, limit: int) -> list[str]:
        with self._connection() as conn, conn.cursor() as cur:
            cur.execute(_RECENT.format(t=TABLE, p="%s"), (user_id, limit))
            return [row[0] for row in cur.fetchall()]

    def add_feedback(self, events: Sequence[Feedback]) -> None:
        with self._connection() as conn, conn.cursor() as cur:
            cur.executemany(_INSERT_FEEDBACK.format(t=FEEDBACK_TABLE, p="%s"),
                            [(e.user_id, e.item_id, e.action, e.timestamp) for e in events])

    def rejected(self, user_id: str) -> list[str]:
        with self._connection() as conn, conn.cursor() as cur:
            cur.execute(_REJECTED.format(t=FEEDBACK_TABLE, p="%s"), (user_id, *REJECTING))
            return [row[0] for row in cur.fetchall()]

    def close(self) -> None:
        if not self._pool.closed:  # idempotent: the app's shutdown and its owner may both close
            self._pool.closeall()


def open_store(uri: str, sqlite_path: Path | None, history_size: int) -> EventStore:
    """The store an ``event_store`` setting names."""
    if sqlite_path is not None:
        return SQLiteEventStore(sqlite_path, history_size)
    return PostgresEventStore(uri, history_size)
