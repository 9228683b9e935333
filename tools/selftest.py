"""`imagenet-tools selftest --out DIR`: what this machine can do, stage by stage (run it first on a new machine,
and attach its selftest.json to a bug report).

    imagenet-tools selftest --quick --out st            # the CPU-sized run CI executes (~3 minutes on 2 cores)
    imagenet-tools selftest --out st                    # more images and steps; the GPU stages where CUDA is
    imagenet-tools selftest --bench --budget 450 --out st   # and the default-configuration bench, within 7.5 min
    imagenet-tools selftest --only pipelines-gpu,train --out st2   # again, only these (and what they need)
    imagenet-tools selftest --plan --bench --budget 450 --device cuda   # what a GPU run would do, and its time

Each stage runs in its own process under a time limit: a failure, a crash or a timeout is recorded with
one line and the run goes on. A table (stage, result, time, figure) goes to stdout; DIR/selftest.json
(every figure), DIR/selftest.md and DIR/selftest.log (every command and its output) are rewritten after
each stage; a DIR with an earlier run's results is refused without --overwrite. docs/selftest.md says what
each stage checks and shows a real run.
"""
from __future__ import annotations

import shlex
from pathlib import Path

import click
from click.core import ParameterSource

from pipeline.devices import device_option
from pipeline.errors import InputError, user_errors
from pipeline.processes import usable_cpus
from tools.checkup.plan import STAGE_NAMES
from tools.checkup.forecast import forecast, plan_lines, planned_settings
from tools.checkup.run import Options, resolve_device, run_selftest, selected

INJECT_KINDS = ("fail", "crash", "hang")


def _pairs(values: tuple[str, ...], flag: str, allowed: tuple[str, ...] | None) -> dict:
    """("stage:value", ...) -> {stage: value}; an InputError names a bad one."""
    pairs = {}
    for text in values:
        name, _, value = text.partition(":")
        if name not in STAGE_NAMES or not value or (allowed is not None and value not in allowed):
            raise InputError(f"{flag} {text}: expected STAGE:{'|'.join(allowed) if allowed else 'SECONDS'} "
                             f"with a stage of {', '.join(STAGE_NAMES)}")
        pairs[name] = value
    return pairs


def _limits(values: tuple[str, ...]) -> dict[str, float]:
    limits = {}
    for name, value in _pairs(values, "--limit", None).items():
        try:
            limits[name] = float(value)
        except ValueError:
            raise InputError(f"--limit {name}:{value}: the limit is a number of seconds") from None
        if not limits[name] > 0:
            raise InputError(f"--limit {name}:{value}: the limit must be more than 0 seconds")
    return limits


def _typed(ctx: click.Context) -> str:
    """The command as the user typed it (the flags given, in the order of --help), for the report."""
    words = ["imagenet-tools", "selftest"]
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name) is not ParameterSource.COMMANDLINE:
            continue
        value, flag = ctx.params[param.name], param.opts[0]
        if getattr(param, "is_flag", False):
            words.append(flag)
        else:
            words += [item for v in (value if param.multiple else [value]) for item in (flag, str(v))]
    return shlex.join(words)


@click.command("selftest")
@click.option("--out", type=click.Path(path_type=Path), default=Path("selftest"), show_default=True,
              help="Folder for selftest.json, selftest.md and selftest.log (checked writable first).")
@click.option("--quick", is_flag=True, help="The CPU-sized run (a few images and steps) that CI executes.")
@click.option("--bench", is_flag=True, help="Also run the default-configuration bench and judge the targets.")
@click.option("--compile", "compile_", is_flag=True, help="Also time torch.compile (slow on a CPU: ~40 s a compile).")
@device_option("Where training, --bench and --compile run; cpu also skips the GPU stages.")
@click.option("--workers", type=click.IntRange(min=1), default=usable_cpus(), show_default="usable CPUs",
              help="DALI threads, DataLoader workers, processes.")
@click.option("--budget", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds for the whole run: a stage that no longer fits is skipped, one running at the end is stopped.")
@click.option("--only", default="", help=f"Comma-separated stages (and what they need): {', '.join(STAGE_NAMES)}.")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the generated data and runs here (default: a temporary folder, removed at the end).")
@click.option("--limit", "limits", multiple=True, metavar="STAGE:SECONDS", help="Another time limit for a stage.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier selftest's results in --out (refused without).")
@click.option("--plan", "plan_only", is_flag=True,
              help="Print each stage that would run, its estimate and time limit, and the sums; run nothing. "
                   "With --device cuda on a machine without CUDA: the plan of a CUDA machine.")
@click.option("--inject", multiple=True, hidden=True, help="Tests: STAGE:fail|crash|hang.")
@user_errors
def main(out: Path, quick: bool, bench: bool, compile_: bool, device: str, workers: int, budget: float | None,
         only: str, work: Path | None, limits: tuple[str, ...], overwrite: bool, plan_only: bool,
         inject: tuple[str, ...]) -> None:
    """Check what this machine can do, stage by stage: environment, data, PCA, pipelines, model, training.

    The exit status is 1 when a stage failed or reached its time limit, or when no stage passed (e.g. a
    --budget too small for any); stages skipped (not asked for, --only, --budget) and GPU stages on a machine
    without CUDA (n/a) do not count as failures while another stage passed.
    """
    options = Options(out=out, quick=quick, bench=bench, compile=compile_, device=device, workers=workers,
                      budget=budget, only=tuple(name.strip() for name in only.split(",") if name.strip()), work=work,
                      inject=_pairs(inject, "--inject", INJECT_KINDS), limits=_limits(limits),
                      command=_typed(click.get_current_context()), overwrite=overwrite)
    if plan_only:
        settings, note = planned_settings(options, resolve_device)
        click.echo("\n".join(plan_lines(options, forecast(options, settings, selected(options)), note)))
        return
    report = run_selftest(options)
    if report["failed"]:
        raise InputError(f"{len(report['failed'])} stage{'s' if len(report['failed']) > 1 else ''} failed: "
                         f"{', '.join(report['failed'])}; the reasons are in the table above and in "
                         f"{out / 'selftest.md'}")
    if report["none_passed"]:
        raise InputError(report["none_passed"])


if __name__ == "__main__":
    main()
