"""The seed confirmation that ends a sweep: before a winner is named, the sweep's top K configurations (by its
ranking value) and the paper default are each retrained with N fresh seeds.

The seeds run as a second Tune experiment, ``<storage>/<sweep>/confirm/``, through the sweep's trainable and
resource packing (:func:`search.sweep.tuner.run_group`: a fixed list of points, FIFO), logged as child runs of the
sweep's parent run tagged ``group=confirm``, ``confirm_rank`` (the configuration's rank in the search),
``confirm_of`` (its source trial) and ``seed``. The plan (configurations and seeds) is saved in
``search/confirm_plan.json`` before any seed starts, so ``--resume`` continues the same plan and reruns no finished
seed.

The winner is the configuration with the best mean ranking value over the seeds (configurations with a failed seed
come after those whose every seed finished); the verdict compares it with the paper default by the mean of the
per-seed differences (the same seeds train both) and its 95% t-interval.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from search.sweep.naming import short_value
from search.sweep.record import SweepPaths, SweepRecord, SweepStateError, save_record
from search.sweep.resources import ResourcePlan
from search.sweep.space import ConfirmSettings, Param, SearchSpace, SpaceError
from search.sweep.summary import TrialRow, best_config, collect_rows, ranked
from search.sweep.tracking import GROUP, SweepFacts, TrackingTarget, finish_parent, point_key
from search.sweep.tuner import TunerSpec, run_group
from vad.atomic import atomic_write_json, atomic_write_text

CONFIRM = "confirm"
"""The ``group`` tag of the confirmation's child runs, and the name of its Tune experiment in the sweep's folder."""
PLAN_FILE = "confirm_plan.json"
LEVEL = 0.95
FINISHED = ("completed", "early_stopped")
"""Outcomes of a seed whose ranking value counts (it trained to its end)."""


# ------------------------------------------------------------------------------------------------ the plan

@dataclass(frozen=True)
class Candidate:
    """One configuration to confirm: its searched values (config form, ``train.seed`` left out) and where it
    comes from."""

    params: dict[str, Any]
    rank: int | None
    """Its trial's rank in the search (1 = best); None when that trial has no finite ranking value."""
    trial_id: str | None
    trial_number: int | None
    default: bool
    """The paper default (the base config's own values)."""

    @property
    def label(self) -> str:
        """``t003``, ``t001 (paper default)``, or ``paper default`` when no search trial ran it."""
        trial = f"t{self.trial_number:03d}" if self.trial_number else ""
        return f"{trial} (paper default)".strip() if self.default and trial else trial or "paper default"

    def tags(self) -> dict[str, str]:
        """The MLflow tags of its seeds' runs beyond ``group`` and ``seed``."""
        return {"confirm_rank": str(self.rank or ""), "confirm_of": self.trial_id or "",
                "confirm_of_trial": self.label, "baseline": str(self.default).lower()}


@dataclass(frozen=True)
class ConfirmPlan:
    candidates: tuple[Candidate, ...]
    seeds: tuple[int, ...]

    def points(self, space: SearchSpace) -> list[dict[str, Any]]:
        """The searcher points, seed by seed (every configuration's first seed first), encoded for the space."""
        return [{**{name: space.params[name].encode(c.params[name]) for name in c.params}, "train.seed": seed}
                for seed in self.seeds for c in self.candidates]

    def save(self, folder: Path) -> None:
        save_record(folder / PLAN_FILE, {"candidates": [asdict(c) for c in self.candidates],
                                         "seeds": list(self.seeds)})

    @classmethod
    def load(cls, folder: Path) -> ConfirmPlan:
        data = json.loads((folder / PLAN_FILE).read_text())
        return cls(tuple(Candidate(**c) for c in data["candidates"]), tuple(data["seeds"]))


def settings(space: SearchSpace, top: int | None, seeds: int | None) -> ConfirmSettings:
    """The space's ``confirm`` section with ``--confirm-top``/``--confirm-seeds`` applied (``None``: the space's)."""
    for flag, value in (("--confirm-top", top), ("--confirm-seeds", seeds)):
        if value is not None and value < 0:
            raise SpaceError(f"{flag} must be 0 (no confirmation) or more, got {value}")
    return ConfirmSettings(space.confirm.top if top is None else top, space.confirm.seeds if seeds is None else seeds)


def choose_candidates(rows: list[TrialRow], space: SearchSpace, top: int) -> list[Candidate]:
    """The ``top`` best distinct configurations of the search (by its ranking value), then the paper default
    unless it is among them."""
    ordered = [row for row in ranked(rows, space.search.mode) if row.objective is not None]
    default_key = point_key(space.baseline)
    out: list[Candidate] = []
    seen: set[str] = set()
    for rank, row in enumerate(ordered, start=1):
        key = point_key(row.params)
        if len(out) == top:
            break
        if key not in seen:
            seen.add(key)
            out.append(_candidate(row, rank, key == default_key))
    if default_key not in seen:
        ranks = {point_key(row.params): rank for rank, row in reversed(list(enumerate(ordered, start=1)))}
        row = next((r for r in sorted(rows, key=lambda r: r.number) if point_key(r.params) == default_key), None)
        params = {k: v for k, v in space.baseline.items() if k != "train.seed"}
        out.append(Candidate(params, ranks.get(default_key), row.trial_id if row else None,
                             row.number if row else None, True))
    return out


def _candidate(row: TrialRow, rank: int, default: bool) -> Candidate:
    params = {k: v for k, v in row.params.items() if k != "train.seed"}
    return Candidate(params, rank, row.trial_id, row.number, default)


def choose_seeds(space: SearchSpace, rows: list[TrialRow], count: int) -> list[int]:
    """``count`` seeds that no search trial used: the base config's ``train.seed`` + 1, + 2, ..., skipping any seed
    a trial searched."""
    first = int(space.base.train.seed)
    used = {first} | {int(row.params["train.seed"]) for row in rows if "train.seed" in row.params}
    seeds: list[int] = []
    seed = first
    while len(seeds) < count:
        seed += 1
        if seed not in used:
            seeds.append(seed)
    return seeds


def confirm_space(space: SearchSpace, plan: ConfirmPlan) -> SearchSpace:
    """The sweep's space as the confirmation runs it: ``train.seed`` searched over the plan's seeds, as many
    trials as points, FIFO (every seed trains every epoch)."""
    params = {name: p for name, p in space.params.items() if name != "train.seed"}
    params["train.seed"] = Param("train.seed", "choice", tuple(plan.seeds))
    count = len(plan.candidates) * len(plan.seeds)
    return replace(space, params=params, search=replace(space.search, num_samples=count, sampler="random"),
                   scheduler=replace(space.scheduler, name="fifo"))


def confirm_paths(paths: SweepPaths) -> SweepPaths:
    """The confirmation's Tune experiment: ``<storage>/<sweep>/confirm/``."""
    return SweepPaths(paths.experiment_dir, CONFIRM)


# ------------------------------------------------------------------------------------------------ the numbers

def t_interval(values: list[float], level: float = LEVEL) -> tuple[float, float, float, float]:
    """``(mean, sample std, low, high)``: the Student t-interval of the mean; std and bounds NaN below 2 values."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    from scipy.stats import t

    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


@dataclass(frozen=True)
class Confirmed:
    """A configuration's ranking values over the confirmation seeds (``None``: the seed failed or did not end)."""

    candidate: Candidate
    values: dict[int, float | None]

    @property
    def finite(self) -> list[float]:
        return [v for v in self.values.values() if v is not None]

    @property
    def complete(self) -> bool:
        return bool(self.values) and len(self.finite) == len(self.values)

    def summary(self, level: float = LEVEL) -> tuple[float, float, float, float]:
        """``(mean, std, low, high)`` over its finished seeds (see :func:`t_interval`)."""
        return t_interval(self.finite, level)


def pick_winner(results: list[Confirmed], mode: str) -> Confirmed | None:
    """The best mean ranking value among configurations whose every seed finished (else among those with any
    finished seed); ties go to the better search rank. None when no seed finished."""
    eligible = [r for r in results if r.complete] or [r for r in results if r.finite]
    if not eligible:
        return None
    sign = 1.0 if mode == "min" else -1.0
    return min(eligible, key=lambda r: (sign * r.summary()[0], r.candidate.rank or math.inf))


@dataclass(frozen=True)
class Verdict:
    """The winner against the paper default: the mean per-seed difference (winner - default) and its interval."""

    difference: float
    low: float
    high: float
    seeds: int
    beats: bool | None
    """True when the interval lies on the better side of 0, False when it does not, None without an interval."""
    text: str


def verdict(winner: Confirmed, default: Confirmed | None, metric: str, mode: str, level: float = LEVEL) -> Verdict:
    """Whether ``winner`` beats ``default`` beyond seed noise (paired over the seeds both finished)."""
    name = winner.candidate.label
    if default is None or winner.candidate == default.candidate:
        return Verdict(0.0, math.nan, math.nan, 0, None,
                       f"The paper default has the best mean {metric} over the confirmation seeds: no searched "
                       f"configuration beats it.")
    common = [s for s, v in winner.values.items() if v is not None and default.values.get(s) is not None]
    differences = [winner.values[s] - default.values[s] for s in common]  # type: ignore[operator]
    mean, _, low, high = t_interval(differences, level)
    if len(differences) < 2:
        return Verdict(mean, low, high, len(differences), None,
                       f"{name} has the best mean {metric}, but {len(differences)} paired seed(s) give no interval: "
                       f"whether it beats the paper default beyond seed noise is unknown (confirm with more seeds).")
    beats = high < 0 if mode == "min" else low > 0
    interval = (f"mean difference in {metric} vs the paper default {mean:+.4g} [{low:+.4g}, {high:+.4g}] "
                f"({level:.0%} t-interval over {len(differences)} paired seeds)")
    text = (f"{name} beats the paper default beyond seed noise: {interval}." if beats else
            f"{name} has the best mean {metric}, but does not beat the paper default beyond seed noise: {interval} "
            f"includes no difference.")
    return Verdict(mean, low, high, len(differences), beats, text)


def gather(plan: ConfirmPlan, rows: list[TrialRow]) -> list[Confirmed]:
    """Each configuration's ranking value per seed, from the confirmation's trial rows."""
    by_point: dict[tuple[str, int], float | None] = {}
    for row in rows:
        value = row.objective if row.outcome.status in FINISHED else None
        by_point[(point_key(row.params), int(row.params["train.seed"]))] = value
    return [Confirmed(c, {seed: by_point.get((point_key(c.params), seed)) for seed in plan.seeds})
            for c in plan.candidates]


# ------------------------------------------------------------------------------------------------ the report

def confirm_table(results: list[Confirmed], space: SearchSpace, level: float = LEVEL) -> str:
    """Markdown: per configuration its search rank, trial, values, per-seed ranking values, mean ± std and
    interval."""
    metric = space.search.metric
    names = [name for name in space.params if name != "train.seed"]
    seeds = list(results[0].values) if results else []
    header = ["search rank", "trial", *names, *(f"seed {s}" for s in seeds), f"{metric} mean ± std",
              f"{level:.0%} interval"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        mean, std, low, high = r.summary(level)
        cells = [str(r.candidate.rank or "-"), r.candidate.label,
                 *(short_value(r.candidate.params.get(name)) for name in names),
                 *(_number(r.values[s]) for s in seeds),
                 f"{_number(mean)} ± {_number(std)}", f"[{_number(low)}, {_number(high)}]"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"


@dataclass
class ConfirmOutcome:
    """What the confirmation adds to the sweep's end: files (for the parent run), tags, metrics."""

    interrupted: bool
    winner: Confirmed | None = None
    files: dict[str, Path] | None = None
    tags: dict[str, Any] | None = None
    metrics: dict[str, float] | None = None


def report(folder: Path, space: SearchSpace, sweep_name: str, plan: ConfirmPlan, results: list[Confirmed],
           rows: list[TrialRow]) -> ConfirmOutcome:
    """``confirm.md``/``confirm.json``, the confirmation section of ``summary.md``/``summary.json``, and
    ``best_config.yaml`` rewritten for the confirmed winner."""
    metric, mode = space.search.metric, space.search.mode
    winner = pick_winner(results, mode)
    default = next((r for r in results if r.candidate.default), None)
    found = verdict(winner, default, metric, mode) if winner is not None else None
    seeds = ", ".join(map(str, plan.seeds))
    lines = [f"## Confirmation with seeds {seeds}", "",
             f"The search's best configuration(s) and the paper default, each retrained with seeds {seeds} (never "
             f"the search's); "
             f"best {metric} ({mode}) of each seed's selected checkpoint, mean ± sample std and {LEVEL:.0%} "
             f"t-interval over seeds.", "", confirm_table(results, space), ""]
    files: dict[str, Path] = {}
    tags: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    if winner is not None and found is not None:
        mean, std, low, high = winner.summary()
        lines += [f"Confirmed winner: {winner.candidate.label}, mean {metric} {_number(mean)} ± {_number(std)}; "
                  f"`best_config.yaml` holds it.", "", found.text, ""]
        path = folder / "best_config.yaml"
        if rows:  # best_config reads the row's params only
            config = best_config(space, replace(rows[0], params=dict(winner.candidate.params)))
            header = (f"# Confirmed winner of sweep {sweep_name}: {winner.candidate.label}, best mean {metric} over "
                      f"seeds {seeds} = {mean:.6g}.\n# {found.text}\n# Run it: python -m vad.train --config {path}\n")
            atomic_write_text(path, header + yaml.safe_dump(config, sort_keys=False))
            files["best_config.yaml"] = path
        tags.update(confirmed_trial_id=winner.candidate.trial_id or "", confirmed_trial=winner.candidate.label,
                    confirm_beats_default=str(found.beats).lower() if found.beats is not None else "unknown")
        metrics[f"confirmed_mean_{metric}"] = mean
        if math.isfinite(found.low):
            metrics.update({"confirm_difference": found.difference, "confirm_difference_low": found.low,
                            "confirm_difference_high": found.high})
    else:
        lines += ["No confirmation seed finished: the search's best trial stays the best config.", ""]
    text = "\n".join(lines)
    atomic_write_text(folder / "confirm.md", text)
    data = {"metric": metric, "mode": mode, "seeds": list(plan.seeds), "level": LEVEL,
            "winner": winner.candidate.label if winner else None,
            "verdict": _finite(asdict(found)) if found else None,
            "configurations": [{**asdict(r.candidate), "values": {str(s): v for s, v in r.values.items()},
                                **_finite(dict(zip(("mean", "std", "low", "high"), r.summary())))} for r in results]}
    atomic_write_json(folder / "confirm.json", data)
    _append_to_summary(folder, text, data)
    files.update({"confirm.md": folder / "confirm.md", "confirm.json": folder / "confirm.json"})
    return ConfirmOutcome(False, winner, files, tags, metrics)


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    """NaN (no interval) as None, so that the JSON files stay standard JSON."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in values.items()}


def _append_to_summary(folder: Path, text: str, data: dict[str, Any]) -> None:
    """The confirmation section in the sweep's ``summary.md`` and ``summary.json`` (written by search.sweep.summary)."""
    summary_md, summary_json = folder / "summary.md", folder / "summary.json"
    if summary_md.is_file():
        atomic_write_text(summary_md, summary_md.read_text().rstrip("\n") + "\n\n" + text)
    if summary_json.is_file():
        summary = json.loads(summary_json.read_text())
        summary["confirmation"] = data
        atomic_write_json(summary_json, summary)


# ------------------------------------------------------------------------------------------------ the stage

def plan_for(space: SearchSpace, paths: SweepPaths, rows: list[TrialRow], chosen: ConfirmSettings) -> ConfirmPlan:
    """The saved plan of a sweep whose confirmation began, else a new one (saved before any seed starts)."""
    if (paths.search_dir / PLAN_FILE).is_file():
        plan = ConfirmPlan.load(paths.search_dir)
        if len(plan.seeds) != chosen.seeds:
            raise SweepStateError(f"sweep {paths.name!r}: its confirmation began with {len(plan.seeds)} seeds; "
                                  f"--confirm-seeds cannot change on --resume")
        return plan
    plan = ConfirmPlan(tuple(choose_candidates(rows, space, chosen.top)),
                       tuple(choose_seeds(space, rows, chosen.seeds)))
    plan.save(paths.search_dir)
    return plan


def run_confirmation(space: SearchSpace, paths: SweepPaths, target: TrackingTarget, facts: SweepFacts,
                     resources: ResourcePlan, rows: list[TrialRow], chosen: ConfirmSettings, *,
                     resume: bool) -> ConfirmOutcome:
    """Retrain the plan's configurations with its seeds (continuing a begun confirmation on ``resume``), then
    write the confirmation's files; ``interrupted`` when a seed did not end."""
    plan = plan_for(space, paths, rows, chosen)
    if not plan.candidates:
        return ConfirmOutcome(False)
    cpaths = confirm_paths(paths)
    cspace = confirm_space(space, plan)
    cfacts = replace(facts, experiment_dir=str(cpaths.experiment_dir), space=cspace, child_tags={GROUP: CONFIRM},
                     run_label=CONFIRM, point_tags={point_key(c.params): c.tags() for c in plan.candidates})
    print(f"Confirmation: {len(plan.candidates)} configuration(s) ({', '.join(c.label for c in plan.candidates)}) "
          f"x seeds {', '.join(map(str, plan.seeds))}: {len(plan.candidates) * len(plan.seeds)} trial(s)",
          flush=True)
    trials = run_group(TunerSpec(cspace, cpaths, cfacts, resources, tuple(plan.points(cspace))), target,
                       resume=resume)
    confirm_rows = collect_rows(trials, cspace, cpaths.experiment_dir)
    if any(row.outcome.status == "interrupted" for row in confirm_rows) or len(confirm_rows) < len(plan.points(
            cspace)):
        return ConfirmOutcome(True)
    results = gather(plan, confirm_rows)
    outcome = report(paths.search_dir, space, paths.name, plan, results, rows)
    print(console_summary(space, results), flush=True)
    return outcome


def console_summary(space: SearchSpace, results: list[Confirmed]) -> str:
    """A few lines for the console (the full table is ``confirm.md``): each configuration's mean ± std and 95%
    interval over the seeds, the winner, and the verdict against the paper default."""
    metric, mode = space.search.metric, space.search.mode
    lines = []
    for result in results:
        mean, std, low, high = result.summary()
        lines.append(f"  {result.candidate.label}: {metric} {_number(mean)} ± {_number(std)} "
                     f"[{_number(low)}, {_number(high)}]")
    winner = pick_winner(results, mode)
    default = next((r for r in results if r.candidate.default), None)
    if winner is not None:
        lines.append(f"Confirmed winner: {winner.candidate.label}. {verdict(winner, default, metric, mode).text}")
    return "\n".join(lines)


def recorded_settings(record: SweepRecord, space: SearchSpace, top: int | None, seeds: int | None, *,
                      resume: bool) -> SweepRecord:
    """The sweep record with the confirmation's settings: the flags' or the space's for a new sweep (none for a
    smoke test), the recorded ones on ``--resume`` (a flag may not change them)."""
    if resume and record.confirm_top is not None:
        for flag, given, kept in (("--confirm-top", top, record.confirm_top),
                                  ("--confirm-seeds", seeds, record.confirm_seeds)):
            if given is not None and given != kept:
                raise SweepStateError(f"{flag} cannot change on --resume (sweep {record.name!r} confirms with "
                                      f"{flag} {kept})")
        return record
    chosen = ConfirmSettings(0, 0) if space.smoke else settings(space, top, seeds)
    return replace(record, confirm_top=chosen.top, confirm_seeds=chosen.seeds)


@dataclass(frozen=True)
class ConfirmStage:
    """What ``search.run`` hands the confirmation: the sweep record (its settings and stage), the search's trial
    logger facts, the resource plan, and whether the sweep was resumed."""

    record: SweepRecord
    facts: SweepFacts
    resources: ResourcePlan
    resume: bool


def confirm_stage(stage: ConfirmStage, space: SearchSpace, paths: SweepPaths, target: TrackingTarget,
                  rows: list[TrialRow]) -> ConfirmOutcome | None:
    """The confirmation after a finished search (None when its settings skip it): the record's stage becomes
    ``confirm``, then ``done`` once every seed ended; an error or a second Ctrl-C closes the parent run."""
    record = stage.record
    if not (record.confirm_top and record.confirm_seeds):
        return None
    replace(record, stage=CONFIRM).save(paths.search_dir)
    try:
        outcome = run_confirmation(space, paths, target, stage.facts, stage.resources, rows,
                                   ConfirmSettings(record.confirm_top, record.confirm_seeds), resume=stage.resume)
    except BaseException as exc:
        try:
            finish_parent(target, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        except Exception as cleanup:  # the original error matters more
            print(f"(could not close the sweep's MLflow run: {cleanup})", file=sys.stderr)
        raise
    if not outcome.interrupted:
        replace(record, stage="done").save(paths.search_dir)
    return outcome
