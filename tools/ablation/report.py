"""An ablation's results side by side with the paper's claims: ablation.json, ablation.md, ablation.png.

A difference is the variant's error minus the baseline's, in percentage points, for each view (centre
crop, 10 crops) and each error (top-1, top-5): positive means worse without the feature, the sign of the
paper's claims (tools/ablation/variants.py).
"""
from __future__ import annotations

import math
import shlex
from pathlib import Path

from pipeline.atomic import write_atomic
from tools.ablation.plan import Plan, write_json
from tools.ablation.variants import BASELINE, BY_NAME, TEN_CROP_CLAIM, Claim
from tools.shared.figures import pyplot, save_figure

VIEWS = ("centre", "10-crop")
ERRORS = ("top1", "top5")


def difference(result: dict, baseline: dict) -> dict:
    """{view: {"top1", "top5"}}: `result`'s error minus `baseline`'s, in points (rounded to 1/100)."""
    return {view: {err: round(result["evaluation"][view][f"{err}_err"] - baseline["evaluation"][view][f"{err}_err"], 2)
                   for err in ERRORS} for view in VIEWS}


def standard_error(error_percent: float, images: int) -> float | None:
    """sqrt(p (1 - p) / n) of an error rate p measured on n images, in points (None for no image)."""
    p = error_percent / 100
    return round(100 * math.sqrt(p * (1 - p) / images), 2) if images else None


def claim_entry(claim: Claim) -> dict:
    return {"top1": claim.top1, "top5": claim.top5, "at_least": claim.at_least, "words": claim.words}


def build_report(plan: Plan, results: list[dict], train_command: list[str]) -> dict:
    """The content of ablation.json; `results` from run_ablation (the baseline first)."""
    baseline = results[0]
    runs = []
    for result in results:
        variant = BY_NAME.get(result["variant"])
        entry = {**result, "section": variant.section if variant else "", "what": variant.what if variant else
                 "the paper's net and training"}
        entry["difference"] = difference(result, baseline) if variant else None
        entry["paper"] = claim_entry(variant.claim) if variant else None
        runs.append(entry)
    centre, ten = baseline["evaluation"]["centre"], baseline["evaluation"]["10-crop"]
    images = centre["images"]
    return {
        "plan": {**plan.record(), "device": plan.device, "variants": [r["variant"] for r in results[1:]]},
        "train_command": shlex.join(["python", "-m", "model.train", *train_command]),
        "images": images,
        # The binomial standard error of the baseline's centre error rates on `images` images, in points:
        # the size of the noise in one measured error.
        "standard_error": {err: standard_error(centre[f"{err}_err"], images) for err in ERRORS},
        "runs": runs,
        "ten_crop": {"measured": {err: round(ten[f"{err}_err"] - centre[f"{err}_err"], 2) for err in ERRORS},
                     "paper": claim_entry(TEN_CROP_CLAIM)},
    }


def pair(values: dict, key: str = "{}_err") -> str:
    return " / ".join(f"{values[key.format(err)]:.2f}" for err in ERRORS)


def paper_cell(paper: dict) -> str:
    if paper["top1"] is None and paper["top5"] is None:
        return f"no number: {paper['words']}"
    top1 = f"{'> ' if paper['at_least'] else ''}{paper['top1']:+.1f}"
    top5 = f"{paper['top5']:+.1f}" if paper["top5"] is not None else "–"
    return f"{top1} / {top5}"


def markdown(report: dict, picture: str) -> str:
    """ablation.md: the table, the §6 comparison, how it was run and what a difference of its size means."""
    plan = report["plan"]
    budget = f"--epochs {plan['epochs']}" + (f", --max-steps {plan['max_steps']}" if plan["max_steps"] else "")
    lines = ["# Ablation: the paper's net, and the net without each feature", "",
             f"Each run: `{report['train_command']}` plus its switch; then `-e --ten-crop` of its last checkpoint "
             f"on the {report['images']} validation images. Same seed, data and budget for every run "
             f"({budget}).", "",
             "Errors in %; Δ = the run's error minus the baseline's, in points (positive: worse without the "
             "feature); the paper's Δ is for its full ImageNet training. The training error is the last epoch's "
             "line, measured in training mode (augmentation and dropout on).", "",
             "| run | switch | § | top-1 / top-5 err, centre | top-1 / top-5 err, 10 crops | Δ centre | Δ 10 crops "
             "| paper's Δ | train top-1 err, last epoch |",
             "|---|---|---|---|---|---|---|---|---|"]
    for run in report["runs"]:
        ev, diff = run["evaluation"], run["difference"]
        cells = [run["variant"], f"`{' '.join(run['flags'])}`" if run["flags"] else "–", run["section"] or "–",
                 pair(ev["centre"]), pair(ev["10-crop"]),
                 " / ".join(f"{diff['centre'][e]:+.2f}" for e in ERRORS) if diff else "–",
                 " / ".join(f"{diff['10-crop'][e]:+.2f}" for e in ERRORS) if diff else "–",
                 paper_cell(run["paper"]) if run["paper"] else "–",
                 f"{run['train_top1_err']:.2f}" if run.get("train_top1_err") is not None else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    ten = report["ten_crop"]
    measured = " / ".join(f"{ten['measured'][e]:+.2f}" for e in ERRORS)
    paper = " / ".join(f"{ten['paper'][e]:+.1f}" for e in ERRORS)
    lines += ["", f"§6, 10 crops instead of the centre crop (the baseline): measured {measured}; the paper {paper} "
              f"({ten['paper']['words']}).", ""]
    se = report["standard_error"]
    if se["top1"] is not None:
        lines += [f"One run per variant and one seed: the binomial standard error of the baseline's error rates on "
                  f"{report['images']} images is ±{se['top1']:.2f} points (top-1) and ±{se['top5']:.2f} (top-5); "
                  "a difference within about twice that (the grey band of the chart) cannot be told from chance.",
                  ""]
    lines += [f"![the differences beside the paper's]({picture})", ""]
    return "\n".join(lines)


def chart(report: dict, path: Path) -> Path:
    """ablation.png: per variant, the measured Δ (centre, 10 crops) beside the paper's, top-1 and top-5."""
    plt = pyplot()
    from matplotlib.patches import Patch

    runs = [run for run in report["runs"] if run["variant"] != BASELINE]
    figure, axes = plt.subplots(1, 2, figsize=(3 + 1.5 * len(runs), 4.4), squeeze=False)
    width, colours = 0.26, {"centre": "tab:blue", "10-crop": "tab:cyan", "paper": "tab:orange"}
    for ax, err in zip(axes[0], ERRORS):
        for i, run in enumerate(runs):
            for offset, view in ((-width, "centre"), (0, "10-crop")):
                ax.bar(i + offset, run["difference"][view][err], width, color=colours[view])
            claim, at_least = run["paper"][err], run["paper"]["at_least"]
            if claim is None:
                ax.text(i + width, 0, "no\nnumber", ha="center", va="bottom", fontsize=7, color="grey")
            else:
                ax.bar(i + width, claim, width, color=colours["paper"], hatch="//" if at_least else None)
                if at_least:
                    ax.text(i + width, claim, "more\nthan", ha="center", va="bottom", fontsize=7)
        if report["standard_error"][err] is not None:
            band = 2 * report["standard_error"][err]
            ax.axhspan(-band, band, color="0.9", zorder=0)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xlim(-0.6, len(runs) - 0.4)
        ax.set_xticks(range(len(runs)), [run["variant"] for run in runs], rotation=20)
        ax.set_title(f"{'top-1' if err == 'top1' else 'top-5'} error")
        ax.set_ylabel("the run's error minus the baseline's (points)")
    handles = [Patch(color=colours["centre"], label="measured, centre crop"),
               Patch(color=colours["10-crop"], label="measured, 10 crops"),
               Patch(color=colours["paper"], label="the paper (ImageNet)"),
               Patch(color="0.9", label="±2 standard errors")]
    axes[0][0].legend(handles=handles, fontsize=7, loc="best")
    figure.suptitle(f"Ablation: {report['images']} validation images, one seed", fontsize=10)
    return save_figure(figure, path, dpi=110)


def write_report(plan: Plan, results: list[dict], train_command: list[str]) -> dict:
    """Write OUT/ablation.json, OUT/ablation.md and OUT/ablation.png; returns the report."""
    report = build_report(plan, results, train_command)
    picture = chart(report, plan.out / "ablation.png")
    write_json(plan.out / "ablation.json", report)
    write_atomic(plan.out / "ablation.md", markdown(report, picture.name))
    return report


def summary_lines(report: dict, out: Path) -> list[str]:
    """The command's last words: each run's centre/10-crop errors and differences, and where the report is."""
    lines = []
    for run in report["runs"]:
        ev = run["evaluation"]
        line = f"{run['variant']:<12} top-1 / top-5 error: centre {pair(ev['centre'])} %, 10 crops {pair(ev['10-crop'])} %"
        if run["difference"]:
            diff = " / ".join(f"{run['difference']['centre'][e]:+.2f}" for e in ERRORS)
            line += f"; Δ centre {diff} (paper {paper_cell(run['paper'])})"
        lines.append(line)
    lines.append(f"wrote {out / 'ablation.md'}, {out / 'ablation.json'}, {out / 'ablation.png'}")
    return lines
