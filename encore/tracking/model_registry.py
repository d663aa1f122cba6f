"""Model registry workflow: register a run's model as ``challenger``, promote to ``champion``.

MLflow 3 uses registry *aliases* (stages are deprecated). A version is promoted to
``champion`` only when its run's metric beats the current champion's by more than a margin
on the same dataset and split (run tags ``encore.dataset`` and ``encore.split_hash``), or
when there is no champion yet, or when forced. Every decision, including a refusal, is
recorded as ``encore.promotion.*`` tags on the candidate version, so the registry UI shows
why a version is (not) serving. A decision once written is never overwritten: a later one on
the same version goes to ``encore.promotion.<n>.*`` (n = 2, 3 ...); asking to promote the
version that already is champion changes nothing, and a dry run only reports.

Aliases are read with ``get_model_version_by_alias`` / ``get_registered_model``, never from
``search_model_versions`` (its results carry empty aliases: mlflow issue #16734).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Literal

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

CHAMPION = "champion"
CHALLENGER = "challenger"
DATASET_TAG = "encore.dataset"
SPLIT_TAG = "encore.split_hash"
TAG_PREFIX = "encore.promotion."
#: Where a run may record the paired significance test of its metric against the champion:
#: a tag holding free text ("p=0.003, paired t-test over users") or a metric holding the p-value.
SIGNIFICANCE_TAG = "encore.significance"
SIGNIFICANCE_METRIC_SUFFIX = "_pvalue"

Decision = Literal["promoted", "rejected", "refused", "unchanged"]


@dataclass(frozen=True)
class PromotionDecision:
    """Outcome of :func:`promote` (also written as tags on the candidate version).

    ``decision``: ``promoted`` (alias moved), ``rejected`` (compared, not better by more than
    the margin), ``refused`` (not comparable: different dataset/split or missing metric) or
    ``unchanged`` (the version already is the champion: nothing compared, nothing written).
    ``dry_run``: the decision that would be taken; neither the alias nor any tag was changed.
    ``difference`` is candidate minus champion, so it is positive when the candidate is
    higher, whatever the metric's direction.
    """

    model_name: str
    version: str
    decision: Decision
    reason: str
    metric: str
    candidate_metric: float | None
    champion_metric: float | None
    champion_version: str | None
    difference: float | None
    margin: float
    significance: str | None
    forced: bool
    dry_run: bool = False

    @property
    def promoted(self) -> bool:
        """True when ``champion`` points at the candidate after the call (or would, in a dry run)."""
        return self.decision in ("promoted", "unchanged")

    def summary(self) -> str:
        """One line: ``encore-ranker version 3: PROMOTED - <reason>`` (``would be`` in a dry run)."""
        verb = f"would be {self.decision.upper()}" if self.dry_run else self.decision.upper()
        return f"{self.model_name} version {self.version}: {verb} - {self.reason}"

    def comparison_lines(self) -> list[str]:
        """The figures behind the decision, one per line (empty when nothing was compared)."""
        if self.decision == "unchanged":
            return []
        lines = [f"metric      {self.metric}",
                 f"candidate   {_shown(self.candidate_metric)} (version {self.version})",
                 f"champion    {_shown(self.champion_metric)} (version {self.champion_version or 'none'})"]
        if self.difference is not None:
            relative = (f" ({100 * self.difference / abs(self.champion_metric):+.2f}%)"
                        if self.champion_metric else "")
            lines.append(f"difference  {self.difference:+.6g}{relative}, margin {self.margin:g}")
        if self.significance:
            lines.append(f"significance {self.significance}")
        return lines

    def as_dict(self) -> dict[str, object]:
        """Plain dict (for JSON output)."""
        return asdict(self)


class RegistryError(RuntimeError):
    """The registry operation cannot proceed; the message says why."""


def _shown(value: float | None) -> str:
    return "missing" if value is None or math.isnan(value) else f"{value:.6g}"


def _resolve_model_id(client: MlflowClient, run_id: str, artifact_path: str) -> str | None:
    """The id of the LoggedModel named ``artifact_path`` that ``run_id`` produced, if any."""
    run = client.get_run(run_id)
    outputs = getattr(run, "outputs", None)
    candidates = []
    for output in getattr(outputs, "model_outputs", None) or []:
        model = client.get_logged_model(output.model_id)
        if model.name == artifact_path:
            candidates.append((output.step, model.model_id))
    if not candidates:
        return None
    return max(candidates)[1]  # the model logged at the latest step, as mlflow.register_model does


def register_run_model(
    run_id: str,
    model_name: str,
    *,
    client: MlflowClient,
    artifact_path: str = "model",
    alias: str = CHALLENGER,
    await_seconds: int = 60,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
    run_link: str | None = None,
) -> ModelVersion:
    """Register the model logged by ``run_id`` as a new version and point ``alias`` at it.

    In MLflow 3 a model is a LoggedModel (``models:/<model_id>``), linked to its run; the
    version is created from it and carries ``run_id`` so promotion can read the run's
    metrics and dataset/split tags. Falls back to ``runs:/<run_id>/<artifact_path>``
    for models logged as plain run artifacts. ``description``, ``tags`` and ``run_link`` (the
    registry UI's "Source Run" link, e.g. to the pipeline's parent run) go on the version.
    """
    try:
        client.create_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    model_id = _resolve_model_id(client, run_id, artifact_path)
    source = f"models:/{model_id}" if model_id else f"runs:/{run_id}/{artifact_path}"
    version = client.create_model_version(
        name=model_name,
        source=source,
        run_id=run_id,
        model_id=model_id,
        await_creation_for=await_seconds,
        description=description,
        tags=dict(tags or {}),
        run_link=run_link,
    )
    _wait_ready(client, model_name, version.version, await_seconds)
    if alias:
        client.set_registered_model_alias(model_name, alias, version.version)
    return client.get_model_version(model_name, version.version)


def _wait_ready(client: MlflowClient, name: str, version: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get_model_version(name, version).status
        if status == "READY":
            return
        if status == "FAILED_REGISTRATION":
            raise RegistryError(f"registration of {name} version {version} failed")
        if time.monotonic() > deadline:
            raise RegistryError(f"{name} version {version} still {status} after {timeout:.0f} s")
        time.sleep(0.5)


def current_alias_version(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    """The version ``alias`` points at, or None when the alias is not set."""
    aliases = client.get_registered_model(model_name).aliases or {}
    if alias not in aliases:
        return None
    return client.get_model_version_by_alias(model_name, alias)


def _run_facts(
    client: MlflowClient, run_id: str | None, metric: str
) -> tuple[float | None, dict[str, str], str | None]:
    """(metric value, tags, significance text) of a version's run."""
    if not run_id:
        return None, {}, None
    run = client.get_run(run_id)
    value = run.data.metrics.get(metric)
    tags = dict(run.data.tags)
    significance = tags.get(f"{SIGNIFICANCE_TAG}.{metric}") or tags.get(SIGNIFICANCE_TAG)
    pvalue = run.data.metrics.get(f"{metric}{SIGNIFICANCE_METRIC_SUFFIX}")
    if significance is None and pvalue is not None:
        significance = f"p={pvalue:.4g}"
    return value, tags, significance


def _fmt(value: float | None) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else repr(float(value))


def decision_prefix(existing: Mapping[str, str]) -> str:
    """Where the next decision on a version goes: ``encore.promotion.`` for the first, then
    ``encore.promotion.2.``, ``.3.`` ..., so no decision is ever overwritten."""
    if TAG_PREFIX + "decision" not in existing:
        return TAG_PREFIX
    n = 2
    while f"{TAG_PREFIX}{n}.decision" in existing:
        n += 1
    return f"{TAG_PREFIX}{n}."


def _record(client: MlflowClient, decision: PromotionDecision, existing: Mapping[str, str]) -> None:
    """Write the decision as tags on the candidate version, beside (never over) earlier ones."""
    tags = {
        "decision": decision.decision,
        "reason": decision.reason,
        "metric": decision.metric,
        "candidate_metric": _fmt(decision.candidate_metric),
        "champion_metric": _fmt(decision.champion_metric),
        "champion_version": decision.champion_version or "",
        "difference": _fmt(decision.difference),
        "margin": _fmt(decision.margin),
        "forced": str(decision.forced).lower(),
        "decided_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if decision.significance is not None:
        tags["significance"] = decision.significance
    prefix = decision_prefix(existing)
    for key, value in tags.items():
        client.set_model_version_tag(decision.model_name, decision.version, prefix + key, value)


def promote(
    model_name: str,
    version: str | int,
    *,
    metric: str = "ndcg_at_10",
    margin: float = 0.0,
    force: bool = False,
    greater_is_better: bool = True,
    dry_run: bool = False,
    significance: str | None = None,
    client: MlflowClient,
) -> PromotionDecision:
    """Move alias ``champion`` to ``version`` if it beats the current champion.

    Rules, in order: the candidate already being champion is ``unchanged`` (nothing is
    compared or written, whatever ``force``); ``force`` always promotes; no champion yet
    promotes; a missing metric or a different
    ``encore.dataset`` / ``encore.split_hash`` refuses; otherwise promote only when the
    candidate is better by more than ``margin`` (higher, or lower when
    ``greater_is_better`` is False). The decision is recorded on the version either way
    (:func:`decision_prefix`), except in a ``dry_run``, which changes nothing. ``significance``
    (text) replaces what the candidate's run recorded (a paired test the caller just ran).
    """
    version = str(version)
    candidate = client.get_model_version(model_name, version)
    cand_value, cand_tags, recorded = _run_facts(client, candidate.run_id, metric)
    significance = significance or recorded
    champion = current_alias_version(client, model_name, CHAMPION)
    # MLflow returns versions as int, callers pass str: compare them as text (as int != str,
    # re-promoting the champion used to be compared with itself and rejected).
    champ_version = str(champion.version) if champion is not None else None
    champ_value, champ_tags = None, {}
    if champion is not None and champ_version != version:
        champ_value, champ_tags, _ = _run_facts(client, champion.run_id, metric)
    difference = None if cand_value is None or champ_value is None else cand_value - champ_value

    def decide(decision: Decision, reason: str) -> PromotionDecision:
        return PromotionDecision(
            model_name=model_name,
            version=version,
            decision=decision,
            reason=reason,
            metric=metric,
            candidate_metric=cand_value,
            champion_metric=champ_value,
            champion_version=champ_version,
            difference=difference,
            margin=margin,
            significance=significance,
            forced=force,
            dry_run=dry_run,
        )

    if champ_version == version:
        return decide("unchanged", f"version {version} is already the champion; nothing to do")
    if force:
        result = decide("promoted", f"forced promotion (previous champion: {champ_version or 'none'})")
    elif champion is None:
        result = (
            decide("promoted", "no champion yet")
            if cand_value is not None
            else decide("refused", f"candidate run has no metric '{metric}'")
        )
    elif cand_value is None:
        result = decide("refused", f"candidate run has no metric '{metric}'")
    elif champ_value is None:
        result = decide(
            "refused",
            f"champion version {champ_version} has no metric '{metric}'; use force to replace it",
        )
    elif mismatch := _split_mismatch(cand_tags, champ_tags):
        result = decide("refused", f"not comparable with champion version {champ_version}: {mismatch}")
    else:
        gain = difference if greater_is_better else -difference
        direction = "higher" if greater_is_better else "lower"
        if gain > margin:
            result = decide(
                "promoted",
                f"{metric} {cand_value:.6g} vs champion {champ_value:.6g}: {direction} by {abs(difference):.6g}"
                f" > margin {margin:g}",
            )
        else:
            result = decide(
                "rejected",
                f"{metric} {cand_value:.6g} vs champion {champ_value:.6g}: not {direction} by more than "
                f"margin {margin:g}",
            )

    if dry_run:
        return result
    if result.promoted:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    _record(client, result, candidate.tags or {})
    return result


def _split_mismatch(candidate: dict[str, str], champion: dict[str, str]) -> str | None:
    """Why two runs are not comparable (dataset/split tags), or None when they are."""
    problems = []
    for tag in (DATASET_TAG, SPLIT_TAG):
        a, b = candidate.get(tag), champion.get(tag)
        if a is None or b is None:
            who = " and ".join(n for n, v in (("candidate", a), ("champion", b)) if v is None)
            problems.append(f"tag {tag} missing on {who} run")
        elif a != b:
            problems.append(f"{tag} differs (candidate {a!r}, champion {b!r})")
    if problems:
        return "; ".join(problems) + " (use force to promote anyway)"
    return None
