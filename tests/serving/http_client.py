"""What the serving tests need to talk to a real service on loopback: a free port and JSON calls."""

from __future__ import annotations

import json
import socket
import urllib.request


def free_port() -> int:
    """A loopback port nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call_json(base: str, path: str, body: dict | None = None) -> dict:
    """GET ``base + path``, or POST ``body`` as JSON; the decoded JSON answer (HTTPError on 4xx/5xx)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base}{path}", data=data, headers={"content-type": "application/json"},
                                     method="POST" if body is not None else "GET")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)
