"""`selftest --plan`: what a selftest with these options would run on this machine, each stage's estimate and
time limit, and their sums, without running anything (e.g. to check that a GPU session's call fits its time).

`--plan --device cuda` on a machine without CUDA plans as for a CUDA machine (the GPU sizes, estimates and
limits, the GPU stages included), so that a GPU run can be checked before any GPU minute is spent.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.devices import canonical
from pipeline.errors import InputError
from tools.checkup.plan import STAGES, Settings
from tools.checkup.report import NAME_WIDTH


@dataclass(frozen=True)
class Planned:
    """One stage in the plan: "runs" with its estimate and time limit, or why it would not run."""

    name: str
    status: str  # "runs", "skipped" or "n/a"
    reason: str = ""
    estimate: float | None = None
    limit: float | None = None


def planned_settings(options, resolve) -> tuple[Settings, str]:
    """The Settings a run would have, and a note on the machine planned for.

    Args:
        options: tools.checkup.run.Options.
        resolve: tools.checkup.run.resolve_device.
    """
    try:
        _, device, cuda = resolve(options.device)
        note = "this machine (torch sees a CUDA device)" if cuda else "this machine (torch sees no CUDA device)"
    except InputError:
        if not canonical(options.device).startswith("cuda"):
            raise
        device, cuda = "gpu", True
        note = f"a machine with CUDA (--device {options.device}; torch sees none here)"
    return Settings(options.quick, device, cuda, options.workers, work=""), note


def forecast(options, settings: Settings, chosen: set[str]) -> list[Planned]:
    """Each stage's fate, as run_selftest decides it, with every stage passing and taking its estimate."""
    from tools.checkup.run import not_run

    left, done, plan = options.budget, {}, []
    for spec in STAGES:
        skip = not_run(spec, options, settings, chosen, done, left)
        if skip is not None:
            plan.append(Planned(spec.name, *skip))
            done[spec.name] = {"status": skip[0]}
            continue
        limit = options.limits.get(spec.name, spec.limit[settings.kind])
        estimate = spec.seconds[settings.kind]
        plan.append(Planned(spec.name, "runs", "", estimate, limit))
        done[spec.name] = {"status": "pass"}
        if left is not None:
            left -= estimate
    return plan


def totals(plan: list[Planned]) -> tuple[float, float]:
    """(sum of the estimates, sum of the time limits) of the stages that run."""
    running = [p for p in plan if p.status == "runs"]
    return sum(p.estimate for p in running), sum(p.limit for p in running)


def plan_lines(options, plan: list[Planned], note: str) -> list[str]:
    """The table `selftest --plan` prints, and its sums."""
    kind = "quick" if options.quick else "default"
    lines = [f"selftest plan ({kind} run) for {note}:",
             f"{'stage':<{NAME_WIDTH}}  {'plan':<7}  {'estimate':>8}  {'limit':>7}  why not"]
    for p in plan:
        estimate = "-" if p.estimate is None else f"{p.estimate:.0f} s"
        limit = "-" if p.limit is None else f"{p.limit:.0f} s"
        lines.append(f"{p.name:<{NAME_WIDTH}}  {p.status:<7}  {estimate:>8}  {limit:>7}  {p.reason}".rstrip())
    estimate, limits = totals(plan)
    count = sum(1 for p in plan if p.status == "runs")
    if options.budget is None:
        bound = f"at most {limits:.0f} s (the sum of their time limits)"
    else:
        bound = f"at most {min(limits, options.budget):.0f} s (--budget {options.budget:.0f} s; their limits sum to {limits:.0f} s)"
    lines.append(f"sum: {count} stages, estimated {estimate:.0f} s, {bound}, plus the selftest's start (~5 s)")
    return lines


def smallest_budget(estimate: float, spent: float) -> int:
    """The --budget that starts work estimated at `estimate` seconds after `spent` seconds of start-up and
    leaves it half as much again before the budget's end stops it (an estimate is a typical time, not a bound)."""
    return math.ceil(spent + 1.5 * estimate + 1)
