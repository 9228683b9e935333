"""visualize: curves, conv1 kernels (exact pixels), nearest neighbours, augmentation grid, report, CLI errors."""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from model.alexnet import build_model
from tests.conftest import CLASSES, write_image_tree
from tests.shard_data import as_files, prepared_shards
from tools import visualize
from tools.viz.curves import lr_drops, read_metrics
from tools.viz.neighbours import nearest
from tools.viz.report import write_report


def write_metrics(run: Path) -> None:
    """Four epochs, the lr divided by 10 before epoch 2, 10-crop errors only in the last epoch."""
    run.mkdir(parents=True, exist_ok=True)
    lines = []
    for epoch, lr in enumerate((0.01, 0.01, 0.001, 0.001)):
        last = epoch == 3
        lines.append(json.dumps({
            "epoch": epoch, "lr": lr, "train_loss": 2.3 - 0.4 * epoch, "train_top1_err": 90 - 15 * epoch,
            "train_top5_err": 50 - 10 * epoch, "val_loss": 2.2 - 0.35 * epoch, "val_top1_err": 88 - 14 * epoch,
            "val_top5_err": 48 - 9 * epoch, "val10_top1_err": 40.0 if last else None,
            "val10_top5_err": 8.0 if last else None, "images_per_s": 20.5, "data_wait_frac": 0.1, "time_s": 30.0,
        }))
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Iterator[Path]:
    """A fake run: metrics.jsonl and a checkpoint of an untrained 3-class AlexNet."""
    run = tmp_path_factory.mktemp("run")
    write_metrics(run)
    torch.manual_seed(0)
    model = build_model("alexnet", num_classes=len(CLASSES))
    state = {"epoch": 4, "arch": "alexnet", "num_classes": len(CLASSES), "state_dict": model.state_dict(),
             "best_acc1": 60.0}
    torch.save(state, run / "checkpoint.pth.tar")
    yield run
    shutil.rmtree(run)  # the whole net's weights (0.24 GB): not kept to the session's end


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    """A 3-class image tree and its lists (written here, as prepare would)."""
    root = tmp_path_factory.mktemp("images")
    written = write_image_tree(root, {"train": 4, "val": 2})
    lists = root / "lists"
    lists.mkdir()
    for split, paths in written.items():
        lines = [f"{p.relative_to(root)} {CLASSES.index(p.parent.name)}" for p in paths]
        (lists / f"{split}.txt").write_text("\n".join(lines) + "\n")
    (lists / "classes.tsv").write_text("".join(f"{i}\t{c}\t{c}\n" for i, c in enumerate(CLASSES)))
    return root, lists


def assert_png(path: Path, min_size: tuple[int, int]) -> np.ndarray:
    assert path.is_file() and path.stat().st_size > 2000
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.std() > 5  # something is drawn, not a blank canvas
    return pixels


def test_curves_png_and_lr_drops(run_dir, tmp_path):
    assert lr_drops(read_metrics(run_dir)) == [2]
    result = CliRunner().invoke(visualize.main, ["curves", str(run_dir), "--out", str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.output
    assert_png(tmp_path / "c.png", (800, 300))


def test_kernel_pixels_are_min_max_scaled_kernels(run_dir, tmp_path):
    out = tmp_path / "k.png"
    result = CliRunner().invoke(visualize.main, ["kernels", str(run_dir), "--out", str(out), "--zoom", "3"])
    assert result.exit_code == 0, result.output
    pixels = np.asarray(Image.open(out))
    weight = torch.load(run_dir / "checkpoint.pth.tar", weights_only=True)["state_dict"]["conv1.weight"].double().numpy()
    # Layout of the docs: 16 per row, 3 rows per tower, 2 px gaps, 10 px between towers, zoom 3.
    cell = 11 * 3 + 2
    assert pixels.shape == (2 + 6 * cell + 10, 2 + 16 * cell, 3)
    for index in range(96):
        tower, within = divmod(index, 48)
        top = 2 + tower * (3 * cell + 10) + (within // 16) * cell
        left = 2 + (within % 16) * cell
        kernel = weight[index]
        expected = np.rint(255 * (kernel - kernel.min()) / (kernel.max() - kernel.min())).astype(np.uint8)
        block = pixels[top:top + 33, left:left + 33]
        np.testing.assert_array_equal(block[::3, ::3], expected.transpose(1, 2, 0))
        np.testing.assert_array_equal(block, np.kron(expected.transpose(1, 2, 0), np.ones((3, 3, 1), np.uint8)))
    # Gaps (including the one between the towers) are white.
    assert (pixels[2 + 3 * cell - 2: 2 + 3 * cell + 10] == 255).all()
    assert (pixels[:, :2] == 255).all()


def test_nearest_matches_brute_force():
    rng = np.random.default_rng(0)
    queries, database = rng.normal(size=(4, 16)), rng.normal(size=(30, 16))
    expected = [sorted(range(30), key=lambda j: np.linalg.norm(q - database[j]))[:6] for q in queries]
    np.testing.assert_array_equal(nearest(queries, database, 6), np.array(expected))


def test_neighbours_png(run_dir, data, tmp_path):
    root, lists = data
    out = tmp_path / "n.png"
    args = ["neighbours", str(run_dir / "checkpoint.pth.tar"), "--root", str(root), "--lists", str(lists),
            "--queries", "2", "--out", str(out)]
    result = CliRunner().invoke(visualize.main, args)
    assert result.exit_code == 0, result.output
    assert_png(out, (600, 200))


def test_augment_png_from_the_dali_graph(data, tmp_path):
    root, lists = data
    out = tmp_path / "a.png"
    args = ["augment", "--root", str(root), "--lists", str(lists), "--images", "2", "--samples", "3", "--out", str(out)]
    result = CliRunner().invoke(visualize.main, args)
    assert result.exit_code == 0, result.output
    assert_png(out, (600, 250))


def test_report_lists_numbers_and_links(run_dir, tmp_path):
    picture = tmp_path / "pictures" / "c.png"
    picture.parent.mkdir()
    picture.write_bytes(b"png")
    report = write_report(run_dir, tmp_path / "report.md", {"Learning curves": picture}, {"wall time (s)": 512.0})
    text = report.read_text()
    assert "| validation top-1 error, centre crop (%) | 46.00 | 46.00 |" in text
    assert "| validation top-1 error, 10 crops (%) | 40.00 | 40.00 |" in text
    assert "![Learning curves](pictures/c.png)" in text
    assert "| wall time (s) | 512.00 |" in text
    assert "Learning rates by epoch: 0.01, 0.01, 0.001, 0.001." in text


def test_errors_are_one_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 0}\nnot json\n')
    result = CliRunner().invoke(visualize.main, ["curves", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: {tmp_path / 'metrics.jsonl'}:2: not a JSON line; "
                                                  "was the file cut short? remove the line"]
    result = CliRunner().invoke(visualize.main, ["kernels", str(tmp_path)])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "no checkpoint" in result.output


def test_augment_has_no_normalize_flag(data, tmp_path):
    """The samples are drawn before normalisation: `visualize augment` takes no --normalize (it ignored it)."""
    root, lists = data
    args = ["augment", "--root", str(root), "--lists", str(lists), "--normalize", "mean", "--out", str(tmp_path / "a.png")]
    result = CliRunner().invoke(visualize.main, args)
    assert result.exit_code == 2 and "No such option '--normalize'" in result.output


def test_confusion_matrix_counts_by_hand():
    from tools.viz.confusion import confusion_matrix

    counts = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3)
    assert counts.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_confusion_png_and_json(run_dir, data, tmp_path, monkeypatch):
    """The real path once (every validation image counted once), then with known predictions: the JSON's
    per-class accuracies and error are those of the predictions."""
    root, lists = data
    out = tmp_path / "c.png"
    result = CliRunner().invoke(visualize.main, ["confusion", str(run_dir), "--root", str(root), "--lists", str(lists),
                                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(out.with_suffix(".json").read_text())
    assert Image.open(out).format == "PNG" and np.array(summary["counts"]).sum() == 6
    from tools.viz import confusion

    monkeypatch.setattr(confusion, "predictions", lambda model, images, paths, stats: np.array([0, 0, 1, 2, 2, 0]))
    confusion.draw_confusion(run_dir / "checkpoint.pth.tar", root, lists, out)
    summary = json.loads(out.with_suffix(".json").read_text())
    labels = [int(line.split()[-1]) for line in (lists / "val.txt").read_text().splitlines()]
    assert labels == [0, 0, 1, 1, 2, 2]
    assert [c["accuracy"] for c in summary["classes"]] == [100.0, 50.0, 50.0]
    assert summary["top1_err"] == pytest.approx(100 * 2 / 6, abs=1e-3) and summary["images"] == 6


@pytest.fixture(scope="module")
def shard_data(tmp_path_factory) -> Path:
    """prepare's lists of generated shards (3 labels), and the same JPEGs as files with lists of their own."""
    base = tmp_path_factory.mktemp("shards")
    expected = prepared_shards(base, train_tars=2, per_tar=4, val_tars=1, labels=3)
    (base / "file_lists").mkdir()
    for split in ("train", "val"):
        as_files(base / "wds", expected[split], base / "files", base / "file_lists" / f"{split}.txt")
    shutil.copy(base / "lists" / "classes.tsv", base / "file_lists" / "classes.tsv")
    return base


def test_neighbours_and_augment_read_shard_lists(run_dir, shard_data, tmp_path):
    """Figure 4 from shards is the picture from the same JPEGs as files, pixel for pixel; augment draws from shards."""
    pictures = []
    for root, lists in (("wds", "lists"), ("files", "file_lists")):
        out = tmp_path / f"{root}.png"
        args = ["neighbours", str(run_dir / "checkpoint.pth.tar"), "--root", str(shard_data / root),
                "--lists", str(shard_data / lists), "--queries", "2", "--out", str(out)]
        result = CliRunner().invoke(visualize.main, args)
        assert result.exit_code == 0, result.output
        pictures.append(assert_png(out, (600, 200)))
    np.testing.assert_array_equal(pictures[0], pictures[1])
    out = tmp_path / "a.png"
    args = ["augment", "--root", str(shard_data / "wds"), "--lists", str(shard_data / "lists"), "--images", "2",
            "--samples", "2", "--out", str(out)]
    result = CliRunner().invoke(visualize.main, args)
    assert result.exit_code == 0, result.output
    assert_png(out, (400, 250))


def test_confusion_refuses_lists_of_other_classes_and_lists_without_val(run_dir, data, tmp_path):
    root, lists = data
    other = tmp_path / "other"
    shutil.copytree(lists, other)
    (other / "classes.tsv").write_text("".join(f"{i}\tn9{i}\tc{i}\n" for i in range(len(CLASSES) + 1)))
    result = CliRunner().invoke(visualize.main, ["confusion", str(run_dir), "--root", str(root), "--lists", str(other),
                                                 "--out", str(tmp_path / "c.png")])
    assert result.exit_code == 1 and "Traceback" not in result.output and "classes" in result.output
    (other / "val.txt").unlink()
    shutil.copy(lists / "classes.tsv", other / "classes.tsv")
    result = CliRunner().invoke(visualize.main, ["confusion", str(run_dir), "--root", str(root), "--lists", str(other),
                                                 "--out", str(tmp_path / "c.png")])
    assert result.exit_code == 1 and "no val.txt" in result.output and "Traceback" not in result.output
