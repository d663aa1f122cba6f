"""The MLflow UI in a real browser: a server over a store, headless Chromium, the pages a user opens.

Shared by the browser tests (``tests/browser/``) and the docs' screenshots
(``python -m benchmarks.screenshots``). The browser is Debian's ``/usr/bin/chromium``
(``scripts/ensure_system_deps.sh`` installs it), driven by Playwright, which never downloads one;
every profile is new, so what the pages show is what a first-time user sees.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run")
VIEWPORT = {"width": 1600, "height": 1000}
ASSISTANT_CLOSED = ("window.localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"
                    "window.localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');")
"""MLflow 3.17 opens its "Assistant" side panel on a new profile's first page (a user closes it
once); the pages here are shown as after that."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """An ``mlflow server`` process starting on ``url``; :meth:`wait` until it answers."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, store_uri: str, log: Any) -> None:
        self.process, self.url, self.store_uri, self.log = process, url, store_uri, log

    def wait(self, timeout: float = 180.0) -> str:
        """Block until ``GET /health`` answers; the address. Fails naming the store when the
        process exits or ``timeout`` passes (a loaded machine takes a minute to import MLflow)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return self.url
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.log.seek(0)
                    lines = self.log.read().decode(errors="replace").strip().splitlines()
                    raise RuntimeError(f"mlflow server over {self.store_uri} did not start on {self.url}: "
                                       f"{lines[-1] if lines else 'no output'}") from None
                time.sleep(0.3)


@contextlib.contextmanager
def mlflow_ui(store_uri: str, artifacts: Path | None = None) -> Iterator[Server]:
    """``mlflow server`` over ``store_uri`` (whose tables exist) on a free loopback port, one worker,
    no job runner; yields at once, so its start overlaps other work (:meth:`Server.wait`)."""
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [str(mlflow if mlflow.exists() else shutil.which("mlflow")), "server", "--backend-store-uri", store_uri,
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    if artifacts is not None:
        command += ["--artifacts-destination", str(artifacts)]
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    # A file, not a pipe: the server logs every request and would block on a full pipe.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            yield Server(process, f"http://127.0.0.1:{port}", store_uri, log)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def chromium_page(viewport: dict[str, int] | None = None) -> Iterator[Any]:
    """A page of a fresh headless Chromium profile (Playwright's sync API)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} not found: install Debian's chromium (scripts/ensure_system_deps.sh)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
        try:
            context = browser.new_context(viewport=viewport or VIEWPORT)
            context.add_init_script(ASSISTANT_CLOSED)
            yield context.new_page()
        finally:
            browser.close()
