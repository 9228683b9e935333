"""Every command proves its output folders writable before it starts its work (issue 15, item 1).

Each case puts a file where an output folder should be, replaces the command's work with a function that fails
the test if called, and expects one `Error: <flag> <path>: ...` line and exit code 1.
"""
from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tests.conftest import CLASSES, write_image_tree


@pytest.fixture
def blocked(tmp_path: Path) -> Path:
    """A file: anything below it cannot be created."""
    path = tmp_path / "a_file"
    path.write_text("x")
    return path


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    """A 3-class tree and its lists folder (train.txt, val.txt, classes.tsv)."""
    root = tmp_path / "images"
    written = write_image_tree(root, {"train": 1, "val": 1})
    lists = tmp_path / "lists"
    lists.mkdir()
    for split, paths in written.items():
        (lists / f"{split}.txt").write_text("".join(f"{p.relative_to(root)} {CLASSES.index(p.parent.name)}\n"
                                                    for p in paths))
    (lists / "classes.tsv").write_text("".join(f"{i}\t{c}\t{c}\n" for i, c in enumerate(CLASSES)))
    return root, lists


def never(*args, **kwargs):
    raise AssertionError("the work started before the output folder was checked")


def expect_refused(command: click.Command, args: list, flag: str, path: Path) -> None:
    result = CliRunner().invoke(command, [str(a) for a in args])
    assert not isinstance(result.exception, AssertionError), result.exception  # the work was not started
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: {flag} {path}: ") and "is a file, not a folder" in last, last


@pytest.mark.parametrize("flag", ["--out", "--npz"])
def test_preview(data, blocked, monkeypatch, flag) -> None:
    import tools.preview as preview

    monkeypatch.setattr(preview, "run_exposed", never)
    root, lists = data
    target = blocked / ("grid.png" if flag == "--out" else "batch.npz")
    expect_refused(preview.main, [root, lists / "train.txt", flag, target], flag, target)


@pytest.mark.parametrize("flag", ["--json", "--png"])
def test_bench(data, blocked, monkeypatch, flag) -> None:
    import tools.bench as bench

    monkeypatch.setattr(bench, "run_bench", never)
    root, lists = data
    target = blocked / "bench.out"
    expect_refused(bench.main, ["--root", root, "--lists", lists, "--device", "cpu", flag, target], flag, target)


@pytest.mark.parametrize("command, module, function", [
    ("curves", "tools.viz.curves", "draw_curves"),
    ("kernels", "tools.viz.kernels", "draw_kernels"),
    ("neighbours", "tools.viz.neighbours", "draw_neighbours"),
    ("augment", "tools.viz.views", "draw_augmentations"),
    ("report", "tools.viz.report", "make_pictures"),
])
def test_visualize(data, blocked, tmp_path, monkeypatch, command, module, function) -> None:
    import importlib

    from tools import visualize

    monkeypatch.setattr(importlib.import_module(module), function, never)
    root, lists = data
    checkpoint = tmp_path / "checkpoint.pth.tar"  # never read: the drawing is replaced
    checkpoint.write_bytes(b"\0")
    target = blocked / ("report.md" if command == "report" else "picture.png")
    args = {"curves": [tmp_path], "kernels": [checkpoint], "augment": ["--root", root, "--lists", lists],
            "neighbours": [checkpoint, "--root", root, "--lists", lists],
            "report": [checkpoint, "--root", root, "--lists", lists]}[command]
    expect_refused(visualize.main, [command, *args, "--out", target], "--out", target)


def test_visualize_default_pictures_folder(data, tmp_path, monkeypatch) -> None:
    """Without --out the picture goes to RUNDIR/pictures/: a file named `pictures` there is found first."""
    import tools.viz.neighbours as neighbours
    from tools import visualize

    monkeypatch.setattr(neighbours, "draw_neighbours", never)
    root, lists = data
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pth.tar").write_bytes(b"\0")
    (run / "pictures").write_text("not a folder")
    target = run / "pictures" / "neighbours.png"
    expect_refused(visualize.main, ["neighbours", run, "--root", root, "--lists", lists], "--out", target)


@pytest.mark.parametrize("module, function, flag", [
    ("tools.make_demo_data", "make_demo_data", "OUT"),
    ("tools.make_bench_data", "make_bench_data", "OUT"),
    ("tools.demo", "run_demo", "--out"),
])
def test_generators_and_demo(blocked, monkeypatch, module, function, flag) -> None:
    import importlib

    command = importlib.import_module(module)
    monkeypatch.setattr(command, function, never)
    target = blocked / "data"
    args = {"OUT": [target], "--out": ["--out", target]}[flag]
    if module == "tools.make_bench_data":
        args += ["--count", "4"]
    expect_refused(command.main, args, flag, target)
