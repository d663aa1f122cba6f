"""Run a module in a fresh Python process that reports its own peak resident memory.

Why not ``ru_maxrss`` from ``wait4`` / ``RUSAGE_CHILDREN``: Linux carries a process's
``maxrss`` over ``exec``, and Python spawns children with ``vfork`` (shared memory until the
exec), so a child reports at least its parent's peak — a benchmark driver holding data would
inflate every component's figure. ``VmHWM`` in ``/proc/self/status`` is the high-water mark of
the child's own address space only.
"""

from __future__ import annotations

import sys
from pathlib import Path

_WRAPPER = """
import re, runpy, sys
peak_file, module = sys.argv[1], sys.argv[2]
sys.argv = [module, *sys.argv[3:]]
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
finally:
    with open("/proc/self/status") as status:
        peak = int(re.search(r"VmHWM:\\s+(\\d+)", status.read()).group(1)) * 1024
    resources = sys.modules.get("encore.resources")
    if resources is not None:  # the runner resets VmHWM per component (measure_peak): ask for the whole
        peak = resources.process_peak_bytes() or peak
    with open(peak_file, "w") as out:
        out.write(str(peak // 1024))
"""


def measured_command(module: str, args: list[str], peak_file: Path) -> list[str]:
    """``python -m module args...`` that writes its peak RSS (KiB) to ``peak_file`` on exit."""
    return [sys.executable, "-c", _WRAPPER, str(peak_file), module, *args]


def read_peak_bytes(peak_file: Path) -> float:
    return float(int(peak_file.read_text()) * 1024)
