"""Load benchmark of the recommendation service on loopback; stops by itself.

    python -m benchmarks.serve_load [--tracking-uri URI] [--model-name NAME] [--rate 200]
                                    [--requests 3000] [--max-seconds 30]

Starts ``python -m encore.serving`` (uvicorn, one process) on a free 127.0.0.1 port with a
fresh SQLite event store, waits (bounded) until ``/ready``, then this process is the client:
8 threads with keep-alive connections send requests on an open-loop schedule (request ``i``
is due at ``t0 + i / rate``); latency is measured from the time a request was *due*, so a
server that falls behind is charged for the queueing it causes. Each scenario sends at most
``--requests`` requests and stops after ``--max-seconds``:

1. ``GET /recommendations/{user}`` for known users without recent events;
2. ``POST /events`` (one listen each, 300 users, catalogue items);
3. ``GET /recommendations/{user}`` for those users, now with up to 10 recent listens
   (the blend path: online candidates + offline list).

Results (requests/s, p50/p99/max latency, errors) go to ``benchmarks/results/serve_load.json``
and ``.md``. The server is stopped (SIGTERM, then SIGKILL after 30 s) whatever happens.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from encore.config.experiment import REPO_ROOT

RESULTS = REPO_ROOT / "benchmarks" / "results"
THREADS = 8


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(port: int, path: str, timeout: float = 5) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with status {proc.returncode}")
        try:
            if _get(port, "/ready", 2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"the service was not ready within {timeout:.0f} s")


def run_scenario(port: int, requests: list[tuple[str, str, bytes | None]], rate: float, max_seconds: float
                 ) -> dict[str, float]:
    """Send ``requests`` (method, path, body) on the open-loop schedule; latency percentiles."""
    latencies = np.full(len(requests), np.nan)
    statuses = np.zeros(len(requests), dtype=np.int64)
    counter = iter(range(len(requests)))
    lock = threading.Lock()
    start = time.perf_counter() + 0.05
    stop_at = start + max_seconds

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            due = start + i / rate
            if due > stop_at:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            method, path, body = requests[i]
            try:
                conn.request(method, path, body=body, headers={"content-type": "application/json"} if body else {})
                response = conn.getresponse()
                response.read()
                statuses[i] = response.status
            except OSError:
                statuses[i] = -1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            latencies[i] = time.perf_counter() - due
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max_seconds + 30)
    done = ~np.isnan(latencies)
    lat_ms = latencies[done] * 1000
    elapsed = max(float(np.nanmax(latencies + (np.arange(len(requests)) / rate))), 1e-9) if done.any() else 0.0
    return {"sent": int(done.sum()), "errors": int((statuses[done] != 200).sum()),
            "requests_per_s": round(float(done.sum()) / elapsed, 1) if elapsed else 0.0,
            "p50_ms": round(float(np.percentile(lat_ms, 50)), 2), "p99_ms": round(float(np.percentile(lat_ms, 99)), 2),
            "max_ms": round(float(lat_ms.max()), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve_load", description=__doc__.split("\n")[0])
    parser.add_argument("--tracking-uri", help="registry to serve from (default MLFLOW_TRACKING_URI / local store)")
    parser.add_argument("--model-name", default="encore-ranker")
    parser.add_argument("--rate", type=float, default=200.0, help="target requests per second")
    parser.add_argument("--requests", type=int, default=3000, help="requests per scenario (bound)")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="time per scenario (bound)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import mlflow

    from encore.tracking.runs import cli_client

    client = cli_client(args.tracking_uri)
    uri = mlflow.get_tracking_uri()  # what cli_client resolved (flag, MLFLOW_TRACKING_URI or the local store)

    champion = client.get_model_version_by_alias(args.model_name, "champion")
    tables = mlflow.pyfunc.load_model(f"models:/{args.model_name}/{champion.version}").unwrap_python_model()
    users = tables.recommendations["user_id"].drop_duplicates().tolist()
    items = tables.similar["item_id"].drop_duplicates().tolist()
    rng = random.Random(args.seed)

    port = _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="encore-serve-load-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCORE_SERVING_")}
    env["ENV_FILE"] = str(tmp / "absent.env")
    cmd = [sys.executable, "-m", "encore.serving", "--port", str(port), "--model-name", args.model_name,
           "--tracking-uri", str(uri), "--event-store", f"sqlite:///{tmp / 'events.db'}"]
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    results: dict[str, Any] = {}
    load_before = round(os.getloadavg()[0], 2)  # other processes on the machine skew the figures
    try:
        wait_ready(port, proc, timeout=180)
        n = args.requests
        warm = [("GET", f"/recommendations/{rng.choice(users)}", None) for _ in range(100)]
        run_scenario(port, warm, args.rate, 10)
        plain = [("GET", f"/recommendations/{rng.choice(users)}?k=10", None) for _ in range(n)]
        results["recommendations, no recent events"] = run_scenario(port, plain, args.rate, args.max_seconds)
        listeners = rng.sample(users, 300)
        events = [("POST", "/events", json.dumps({"user_id": rng.choice(listeners),
                                                  "item_id": rng.choice(items)}).encode()) for _ in range(n)]
        results["POST /events (1 listen)"] = run_scenario(port, events, args.rate, args.max_seconds)
        blended = [("GET", f"/recommendations/{rng.choice(listeners)}?k=10", None) for _ in range(n)]
        results["recommendations, with recent events"] = run_scenario(port, blended, args.rate, args.max_seconds)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
    meta = {"load_average_1m_after": round(os.getloadavg()[0], 2), "load_average_1m_before": load_before,
            "rate": args.rate, "threads": THREADS, "cores": os.cpu_count(), "python": platform.python_version(),
            "model": f"{args.model_name}/{champion.version}"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_load.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    lines = [f"Target {args.rate:.0f} req/s, {THREADS} client threads, {os.cpu_count()} cores "
             f"(server and client share them); 1-min load average {load_before} before, "
             f"{meta['load_average_1m_after']} after",
             "", "| scenario | requests | errors | requests/s | p50 (ms) | p99 (ms) | max (ms) |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {name} | {r['sent']} | {r['errors']} | {r['requests_per_s']} | {r['p50_ms']} | {r['p99_ms']} | "
              f"{r['max_ms']} |" for name, r in results.items()]
    (RESULTS / "serve_load.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["errors"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
