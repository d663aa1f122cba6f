"""``python -m encore.pipeline clean``: remove the output folders no recent run used.

Every run records which output folders it used (its own outputs, computed or reused, and the
inputs they read) in ``<output_dir>/<experiment>/.usage.jsonl``, one line per folder and run
(:func:`record_use`; a pipeline is one run, a lone component another). ``clean`` keeps, per
experiment, every folder one of the last ``--keep`` runs used (default 3) and removes the other
output folders, except one whose lock a running pipeline holds (it is computing or reading it:
skipped and said). Each removal takes the folder's lock first, so a pipeline starting meanwhile
waits and then recomputes instead of reading a half-removed folder. An experiment folder
without any recorded run is left alone (its outputs predate the record). It prints what it
freed; ``--dry-run`` only says what it would remove.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from encore.io import path_lock

USAGE = ".usage.jsonl"
DEFAULT_KEEP = 3

_RUN: ContextVar[str | None] = ContextVar("encore_run", default=None)


@contextmanager
def one_run() -> Iterator[str]:
    """Everything recorded inside the block belongs to one run (a pipeline); yields its key."""
    key = _RUN.get()
    if key is not None:  # nested: the outer run's
        yield key
        return
    token = _RUN.set(uuid.uuid4().hex)
    try:
        yield _RUN.get() or ""
    finally:
        _RUN.reset(token)


def record_use(folders: Sequence[Path]) -> None:
    """Note that the current run (or, outside :func:`one_run`, a run of its own) uses ``folders``
    (output folders, each directly under its experiment's folder)."""
    key = _RUN.get() or uuid.uuid4().hex
    stamp = time.time()
    for folder in folders:
        line = json.dumps({"run": key, "time": stamp, "output": folder.name}) + "\n"
        folder.parent.mkdir(parents=True, exist_ok=True)
        # O_APPEND: lines of concurrent runs never interleave within a line.
        fd = os.open(folder.parent / USAGE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def kept_outputs(experiment_dir: Path, keep: int) -> set[str] | None:
    """Folder names used by the last ``keep`` runs of this experiment; None without a record."""
    usage = experiment_dir / USAGE
    if not usage.is_file():
        return None
    last_seen: dict[str, float] = {}
    uses: dict[str, set[str]] = {}
    for text in usage.read_text().splitlines():
        try:
            entry = json.loads(text)
        except ValueError:  # a line cut short by a crash: skip it
            continue
        last_seen[entry["run"]] = max(last_seen.get(entry["run"], 0.0), float(entry["time"]))
        uses.setdefault(entry["run"], set()).add(entry["output"])
    recent = sorted(last_seen, key=last_seen.__getitem__)[-keep:] if keep else []
    return set().union(*(uses[run] for run in recent))


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


@dataclass(frozen=True)
class Cleaned:
    """What :func:`clean` did with one folder: ``removed`` (or would, dry run), ``held``."""

    path: Path
    bytes: int
    action: str


def clean(output_dir: Path, keep: int = DEFAULT_KEEP, *, dry_run: bool = False) -> list[Cleaned]:
    """Remove, in every experiment folder of ``output_dir``, the output folders none of the last
    ``keep`` runs used; never a folder whose lock is held. Returns what was (or would be) done."""
    done: list[Cleaned] = []
    if not output_dir.is_dir():
        return done
    for experiment_dir in sorted(p for p in output_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        kept = kept_outputs(experiment_dir, keep)
        if kept is None:
            continue
        for folder in sorted(experiment_dir.iterdir()):
            if not folder.is_dir() or folder.name.startswith(".") or folder.name in kept:
                continue
            with path_lock(folder, wait=False) as free:
                if not free:
                    done.append(Cleaned(folder, 0, "held"))
                    continue
                size = _size(folder)
                if not dry_run:
                    shutil.rmtree(folder)
                done.append(Cleaned(folder, size, "would remove" if dry_run else "removed"))
    return done


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def main(argv: Sequence[str] | None = None, *, output_dir: Path | None = None) -> int:
    """The ``clean`` command line; prints one line per folder and the total freed."""
    from encore.config.experiment import ConfigError, load_config

    parser = argparse.ArgumentParser(prog="python -m encore.pipeline clean", description=__doc__.split("\n")[0])
    parser.add_argument("--keep", type=int, default=DEFAULT_KEEP,
                        help="keep what the last KEEP runs of each experiment used (default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    parser.add_argument("--output-dir", type=Path, default=output_dir,
                        help="the outputs folder (default: the configured one, ENCORE_OUTPUT_DIR or outputs/)")
    args = parser.parse_args(argv)
    if args.keep < 1:
        print("error: --keep must be at least 1 (the last run's outputs are always kept)", file=sys.stderr)
        return 2
    if args.output_dir is None:
        try:
            args.output_dir = load_config(None).output_dir
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    done = clean(args.output_dir, args.keep, dry_run=args.dry_run)
    for item in done:
        detail = "in use by a running pipeline (its lock is held): kept" if item.action == "held" else _mib(item.bytes)
        print(f"{item.action:>12}  {item.path}  {detail}")
    freed = sum(item.bytes for item in done if item.action != "held")
    verb = "would free" if args.dry_run else "freed"
    print(f"{verb} {_mib(freed)} in {sum(item.action != 'held' for item in done)} folder(s) under {args.output_dir} "
          f"(kept what the last {args.keep} run(s) of each experiment used)")
    return 0
