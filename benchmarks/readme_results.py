"""Write the README's results block from a finished run, so its figures cannot drift.

    python -m benchmarks.readme_results [--experiment experiments/lastfm2k.yaml] [--seconds S] [--check]

Reads the ``evaluate`` output of the experiment's current configuration (run it first, e.g.
``make run``) and replaces what stands between ``<!-- results:<experiment>:start -->`` and
``<!-- results:<experiment>:end -->`` in README.md: the comparison table at k = 10 and the
ranker-vs-best-model sentence with its paired CI. ``--seconds`` adds the measured wall time of
the run and the machine. ``--check`` exits 1 when the README differs from the run instead of
writing it.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
from pathlib import Path

from encore.config.experiment import REPO_ROOT, load_config
from encore.io import is_complete, read_json
from encore.pipeline.runner import fingerprint, output_dir


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {memory:.0f} GB, {platform.machine()}, Python {platform.python_version()}"


def results_block(evaluate_dir: Path, seconds: float | None) -> str:
    table = (evaluate_dir / "comparison.md").read_text().strip()
    significance = read_json(evaluate_dir / "significance.json")
    metric = significance["primary_metric"]
    lines = [table, ""]
    vs = significance.get("vs_best_generator")
    if vs is not None:
        lines.append(
            f"**Ranker vs the best single model ({significance['best_generator']}):** {metric} "
            f"{vs['mean_b']:.4f} vs {vs['mean_a']:.4f}, **{100 * vs['rel_uplift']:+.1f}%**, paired bootstrap "
            f"{100 * vs['confidence']:.0f}% CI of the uplift **{100 * vs['rel_ci_low']:+.1f}% … "
            f"{100 * vs['rel_ci_high']:+.1f}%** (absolute {vs['ci_low']:+.4f} … {vs['ci_high']:+.4f}), "
            f"t = {vs['t_statistic']:.1f}, p = {vs['p_value']:.1g}; {vs['n_better']} users better, "
            f"{vs['n_worse']} worse, {significance['n_test_users']} test users."
        )
    if seconds is not None:
        lines.append(f"Whole pipeline (prepare … evaluate): {seconds:.0f} s on {machine()}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--experiment", type=Path, default=REPO_ROOT / "experiments" / "lastfm2k.yaml")
    parser.add_argument("--readme", type=Path, default=REPO_ROOT / "README.md")
    parser.add_argument("--seconds", type=float, default=None, help="measured wall time of the run")
    parser.add_argument("--check", action="store_true", help="exit 1 if the README differs; write nothing")
    args = parser.parse_args(argv)
    config = load_config(args.experiment)
    evaluate_dir = output_dir(config, "evaluate")
    if not is_complete(evaluate_dir, fingerprint(config, "evaluate")):
        print(f"error: no complete evaluate output at {evaluate_dir}: run `make run` first", file=sys.stderr)
        return 2
    name = config.experiment.name
    start, end = f"<!-- results:{name}:start -->", f"<!-- results:{name}:end -->"
    readme = args.readme.read_text()
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), flags=re.DOTALL)
    if not pattern.search(readme):
        print(f"error: {args.readme} has no {start} … {end} block", file=sys.stderr)
        return 2
    block = results_block(evaluate_dir, args.seconds)
    if args.seconds is None:  # keep the measured time already there
        old = pattern.search(readme).group(0)
        kept = re.search(r"^Whole pipeline .*$", old, flags=re.MULTILINE)
        block += f"\n{kept.group(0)}" if kept else ""
    updated = pattern.sub(lambda _: f"{start}\n{block}\n{end}", readme)
    if args.check:
        return 0 if updated == readme else 1
    args.readme.write_text(updated)
    print(f"{args.readme}: results of {name} written from {evaluate_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
