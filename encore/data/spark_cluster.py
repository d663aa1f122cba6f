"""A Spark standalone cluster on this machine: one master and N workers on loopback.

Started from pyspark's own distribution (``pyspark/bin/spark-class``; Java 17+), so nothing
beyond ``pip install -e '.[spark]'`` is needed. The tests start one for the session; a user
starts one to try the Spark paths on a real cluster (separate JVMs, executors that can die)::

    python -m encore.data.spark_cluster --workers 2 --cores 1 --memory 1g

prints the master URL (``spark://127.0.0.1:<port>``) and runs until Ctrl-C, then stops every
process it started. Point Encore at it with ``ENCORE_SPARK_MASTER=spark://127.0.0.1:<port>``
(or ``master:`` in the Spark settings file); see docs/scaling.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"


def spark_home() -> Path:
    """pyspark's own Spark distribution (its ``bin/spark-class`` starts masters and workers)."""
    try:
        import pyspark
    except ImportError as exc:
        raise RuntimeError("a Spark cluster needs pyspark: pip install -e '.[spark]'") from exc
    return Path(pyspark.__file__).parent


def free_port() -> int:
    """A TCP port free on loopback now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class StandaloneCluster:
    """A master and ``n_workers`` workers (``cores`` / ``memory`` each) on 127.0.0.1 free ports.

    :meth:`start` returns once every worker is registered with the master (read from the
    master's JSON status page); :meth:`stop` ends every process it started (each JVM is a
    process-group leader, so executors the workers forked go with them).
    """

    n_workers: int = 2
    cores: int = 1
    memory: str = "1g"
    work_dir: Path | None = None
    daemon_memory: str = "256m"
    timeout: float = 90.0
    master_port: int = field(default=0, init=False)
    webui_port: int = field(default=0, init=False)
    _processes: dict[str, subprocess.Popen] = field(default_factory=dict, init=False, repr=False)
    _own_dir: bool = field(default=False, init=False, repr=False)

    @property
    def master_url(self) -> str:
        return f"spark://{HOST}:{self.master_port}"

    @property
    def status_url(self) -> str:
        return f"http://{HOST}:{self.webui_port}/json/"

    def _env(self, name: str) -> dict[str, str]:
        assert self.work_dir is not None
        env = dict(os.environ)
        env |= {
            "SPARK_HOME": str(spark_home()),
            "SPARK_LOCAL_IP": HOST,
            "SPARK_LOG_DIR": str(self.work_dir / "logs"),
            "SPARK_WORKER_DIR": str(self.work_dir / name),
            "SPARK_DAEMON_MEMORY": self.daemon_memory,
            "SPARK_NO_DAEMONIZE": "1",
            # Executors run Python (mapInPandas) with this interpreter and its packages.
            "PYSPARK_PYTHON": sys.executable,
        }
        return env

    def _launch(self, name: str, args: list[str]) -> None:
        assert self.work_dir is not None
        log = (self.work_dir / f"{name}.log").open("wb")
        command = [str(spark_home() / "bin" / "spark-class"), *args]
        # Own process group: stop() and kill_worker() reach the JVM and the executors it forks.
        self._processes[name] = subprocess.Popen(command, env=self._env(name), stdout=log,
                                                 stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def start(self) -> str:
        """Start the master and the workers; wait until all are registered; the master URL."""
        if self.work_dir is None:
            self.work_dir = Path(tempfile.mkdtemp(prefix="encore-spark-cluster-"))
            self._own_dir = True
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.master_port, self.webui_port = free_port(), free_port()
        self._launch("master", ["org.apache.spark.deploy.master.Master", "--host", HOST,
                                "--port", str(self.master_port), "--webui-port", str(self.webui_port)])
        try:
            # Workers that find no master retry only after 5-15 s: start them once it listens.
            self.wait_for_workers(0)
            for index in range(self.n_workers):
                self.start_worker(index, wait=False)
            self.wait_for_workers(self.n_workers)
        except BaseException:
            self.stop()
            raise
        return self.master_url

    def start_worker(self, index: int, *, wait: bool = True) -> None:
        """(Re)start worker ``index`` (nothing to do while it runs); with ``wait``, return once the
        master counts it alive."""
        running = self._processes.get(f"worker-{index}")
        if running is not None and running.poll() is None:
            return
        self._launch(f"worker-{index}", ["org.apache.spark.deploy.worker.Worker", "--host", HOST,
                                         "--port", str(free_port()), "--webui-port", str(free_port()),
                                         "--cores", str(self.cores), "--memory", self.memory, self.master_url])
        if wait:
            self.wait_for_workers(self.alive_expected())

    def alive_expected(self) -> int:
        return sum(1 for name, p in self._processes.items() if name.startswith("worker-") and p.poll() is None)

    def status(self) -> dict:
        """The master's JSON status page (workers, applications)."""
        with urllib.request.urlopen(self.status_url, timeout=5) as response:
            return json.loads(response.read())

    def alive_workers(self) -> int:
        return sum(1 for worker in self.status().get("workers", []) if worker.get("state") == "ALIVE")

    def wait_for_workers(self, n: int) -> None:
        """Block until the master counts ``n`` alive workers; fail naming the log folder."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for name, process in self._processes.items():
                if process.poll() is not None and (name == "master" or self.alive_expected() < n):
                    raise RuntimeError(f"Spark {name} exited with code {process.returncode}; "
                                       f"see {self.work_dir}/{name}.log")
            try:
                if self.alive_workers() >= n:
                    return
            except OSError:
                pass  # the master's web UI is not up yet
            time.sleep(0.5)
        raise RuntimeError(f"{n} Spark workers not registered with {self.master_url} within {self.timeout:.0f} s; "
                           f"see the logs in {self.work_dir}")

    def kill_worker(self, index: int) -> None:
        """SIGKILL worker ``index`` and the executors it forked, as a machine that dies."""
        process = self._processes.pop(f"worker-{index}")
        _kill_group(process, signal.SIGKILL)

    def stop(self) -> None:
        """End every process started here (workers first), and remove the folder it made."""
        for name in sorted(self._processes, key=lambda n: n == "master"):
            _kill_group(self._processes.pop(name), signal.SIGTERM)
        if self._own_dir and self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> StandaloneCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill_group(process: subprocess.Popen, sig: int) -> None:
    """Signal the process group ``process`` leads; SIGKILL whatever has not ended after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    with contextlib.suppress(ProcessLookupError):  # executors the JVM forked are in its group
        os.killpg(process.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    """``python -m encore.data.spark_cluster``: run a loopback cluster until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="number of workers (default 2)")
    parser.add_argument("--cores", type=int, default=1, help="cores per worker (default 1)")
    parser.add_argument("--memory", default="1g", help="memory per worker (default 1g)")
    parser.add_argument("--work-dir", type=Path, default=None, help="logs and worker folders (default: a temp folder)")
    args = parser.parse_args(argv)
    cluster = StandaloneCluster(n_workers=args.workers, cores=args.cores, memory=args.memory, work_dir=args.work_dir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with cluster:
        print(f"Spark master {cluster.master_url} with {args.workers} workers (status: "
              f"http://{HOST}:{cluster.webui_port}); export ENCORE_SPARK_MASTER={cluster.master_url}", flush=True)
        try:
            while all(p.poll() is None for p in cluster._processes.values()):
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
