"""`python -m model.predict`: top-5 names and probabilities, against a PIL/NumPy reference of validation's preprocessing."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from model.alexnet import AlexNet
from model.checkpoint import save_checkpoint
from model.predict import main
from pipeline.constants import IMAGENET_MEAN_255, IMAGENET_STD_255
from tests.conftest import textured_image

SCALE = 0.3  # spreads the probabilities so their order is well defined
PUBLISHED = {"pca": None, "pca_sha256": None, "mean_image": None, "mean_image_sha256": None}  # no --pca
NAMES = ["tench", "English springer", "cassette player", "chain saw", "church", "French horn"]


@pytest.fixture
def trained(tmp_path):
    """A checkpoint with random weights, fc8 scaled so the six probabilities are spread (order well defined)."""
    torch.manual_seed(0)
    net = AlexNet(num_classes=len(NAMES)).eval()
    with torch.no_grad():
        net.fc8.weight.mul_(SCALE)
    state = {"epoch": 1, "arch": "alexnet", "num_classes": len(NAMES), "state_dict": net.state_dict(),
             "config": {"DataConfig": {"normalize": "meanstd", "pca": None}}, "statistics": PUBLISHED,
             "classes": [f"n{i:08d}" for i in range(len(NAMES))]}
    save_checkpoint(state, tmp_path / "run", is_best=False)
    classes = tmp_path / "classes.tsv"
    classes.write_text("".join(f"{i}\tn{i:08d}\t{name}\n" for i, name in enumerate(NAMES)))
    rng = np.random.default_rng(1)
    images = []
    for i, size in enumerate([(300, 200), (180, 420)]):
        path = tmp_path / f"photo {i}.jpg"
        textured_image(rng, *size, class_index=i).save(path, quality=92)
        images.append(path)
    return net, tmp_path / "run" / "checkpoint.pth.tar", classes, images


def after_device(stderr: str) -> list[str]:
    """stderr's lines after the first, which says where the command runs."""
    lines = stderr.splitlines()
    assert lines and lines[0].startswith("device: "), stderr
    return lines[1:]


def reference_probabilities(net: torch.nn.Module, path) -> np.ndarray:
    """Validation by hand: shorter side 256 (PIL bilinear), centre 256, centre 224, (x - mean) / std."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    scale = 256 / min(w, h)
    image = image.resize((round(w * scale), round(h * scale)), Image.BILINEAR)
    pixels = np.asarray(image, dtype=np.float64)
    top, left = int((pixels.shape[0] - 256) / 2 + 0.5), int((pixels.shape[1] - 256) / 2 + 0.5)
    crop = pixels[top + 16: top + 240, left + 16: left + 240]
    x = (crop - np.array(IMAGENET_MEAN_255)) / np.array(IMAGENET_STD_255)
    with torch.no_grad():
        logits = net(torch.from_numpy(x.transpose(2, 0, 1)[None]).float()).double()
    return torch.softmax(logits, dim=1)[0].numpy()


def test_prints_top5_names_and_probabilities(trained):
    net, checkpoint, classes, images = trained
    result = CliRunner().invoke(main, [str(checkpoint), *map(str, images), "--classes", str(classes)])
    assert result.exit_code == 0, result.output
    assert result.stderr == "device: cpu (auto: torch sees no CUDA device)\n" or torch.cuda.is_available()
    blocks = result.stdout.strip().split("\n" + str(images[1]) + "\n")
    assert blocks[0].startswith(str(images[0]))
    for path, block in zip(images, [blocks[0].split("\n", 1)[1], blocks[1]]):
        rows = [line.split(None, 3) for line in block.strip().splitlines()]
        expected = reference_probabilities(net, path)
        order = np.argsort(-expected)[:5]
        assert [int(r[1]) for r in rows] == order.tolist()
        assert [(r[2], r[3]) for r in rows] == [(f"n{i:08d}", NAMES[i]) for i in order]
        np.testing.assert_allclose([float(r[0].rstrip("%")) / 100 for r in rows], expected[order], atol=2e-4)


@pytest.mark.parametrize("case, message", [
    ("missing_image", "no such image file"),
    ("other_classes", "checkpoint has 6 classes, the class table has 2"),
    ("not_a_checkpoint", "not a readable checkpoint"),
])
def test_bad_input_gives_one_line(trained, tmp_path, case, message):
    _, checkpoint, classes, images = trained
    arguments = [str(checkpoint), str(images[0]), "--classes", str(classes)]
    if case == "missing_image":
        arguments[1] = str(tmp_path / "nope.jpg")
    elif case == "other_classes":
        classes.write_text("0\ta\tA\n1\tb\tB\n")
    else:
        bogus = tmp_path / "bogus.pth.tar"
        bogus.write_text("hello")
        arguments[0] = str(bogus)
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_one_bad_path_is_reported_and_the_others_are_still_classified(trained, tmp_path):
    _, checkpoint, classes, images = trained
    missing, folder = tmp_path / "nope.jpg", tmp_path / "a folder"
    folder.mkdir()
    result = CliRunner().invoke(main, [str(checkpoint), str(images[0]), str(missing), str(folder), str(images[1]),
                                       "--classes", str(classes)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    printed = result.stdout.splitlines()
    assert [line for line in printed if not line.startswith(" ")] == [str(images[0]), str(images[1])]
    assert len(printed) == 2 * (1 + 5)  # both good images have their top 5
    assert after_device(result.stderr) == [
        f"Error: {missing}: no such image file",
        f"Error: {folder}: is a folder, not an image file; give the image files (e.g. {folder}/*.JPEG)",
        "Error: 2 of 4 images could not be classified (each is named above)",
    ]


def test_a_run_with_a_relative_pca_path_predicts_from_another_folder(trained, tmp_path, monkeypatch):
    """The checkpoint stores the pca.json path absolute, so predict finds it from any working folder."""
    from model.train import main as train_main
    from pipeline.constants import IMAGENET_MEAN_255, IMAGENET_PCA_EIGVAL, IMAGENET_PCA_EIGVEC, IMAGENET_STD_255
    from tests.fake_data import install, write_tiny_lists

    _, _, _, images = trained
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    write_tiny_lists(work / "lists")
    (work / "stats.json").write_text(json.dumps({
        "eigval": list(IMAGENET_PCA_EIGVAL), "eigvec": [list(row) for row in IMAGENET_PCA_EIGVEC],
        "mean": [v / 255 for v in IMAGENET_MEAN_255], "std": [v / 255 for v in IMAGENET_STD_255]}))
    install(monkeypatch)
    monkeypatch.chdir(work)
    trained_run = CliRunner().invoke(train_main, ["--root", ".", "--lists", "lists", "--pca", "stats.json",
                                                  "--out", "run", "--epochs", "1", "--lr", "0.001"])
    assert trained_run.exit_code == 0, trained_run.output
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(main, [str(work / "run" / "model_best.pth.tar"), str(images[0]),
                                       "--classes", str(work / "lists" / "classes.tsv")])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == str(images[0]) and len(result.stdout.splitlines()) == 3


def test_a_class_table_in_another_order_is_refused(trained):
    """As many classes, two swapped: the labels would name the wrong classes; the first that differs is named."""
    _, checkpoint, classes, images = trained
    rows = [(f"n{i:08d}", name) for i, name in enumerate(NAMES)]
    rows[2], rows[4] = rows[4], rows[2]
    classes.write_text("".join(f"{i}\t{wnid}\t{name}\n" for i, (wnid, name) in enumerate(rows)))
    result = CliRunner().invoke(main, [str(checkpoint), str(images[0]), "--classes", str(classes)])
    assert result.exit_code == 1 and result.stdout == "" and "Traceback" not in result.output
    assert after_device(result.stderr) == [f"Error: {checkpoint}: {classes} labels other classes than the run was "
                                          f"trained on: label 2 is n00000002 in the checkpoint, n00000004 in "
                                          f"{classes}; use the lists the run was trained with"]


def test_other_statistics_are_refused_unless_accepted(trained, tmp_path):
    """The run's pca.json replaced under the same name, or one given for a run of the published values: refused
    in one line naming both; --accept-pca-change classifies with a note."""
    from tests.statistics_files import described, mean_image_of, sha256, write_pca_json

    net, _, classes, images = trained
    stats = write_pca_json(tmp_path / "stats" / "pca.json")
    recorded = {"pca": str(stats), "pca_sha256": sha256(stats), "mean_image": str(mean_image_of(stats)),
                "mean_image_sha256": sha256(mean_image_of(stats))}
    trained_with = described(stats)
    state = {"epoch": 1, "arch": "alexnet", "num_classes": len(NAMES), "state_dict": net.state_dict(),
             "config": {"DataConfig": {"normalize": "meanstd", "pca": str(stats)}}, "statistics": recorded,
             "classes": [f"n{i:08d}" for i in range(len(NAMES))]}
    checkpoint = save_checkpoint(state, tmp_path / "with_pca", is_best=False)
    mean_image_of(stats).unlink()
    write_pca_json(stats, shift=0.02)
    arguments = [str(checkpoint), str(images[0]), "--classes", str(classes)]
    refused = CliRunner().invoke(main, arguments)
    change = f"other colour statistics than the run's: trained with {trained_with}, now {described(stats)}"
    assert refused.exit_code == 1 and refused.stdout == "" and "Traceback" not in refused.output
    assert after_device(refused.stderr) == [f"Error: {checkpoint}: {change}; pass --pca with the file it was trained "
                                           "with, or --accept-pca-change to go on with these"]
    accepted = CliRunner().invoke(main, [*arguments, "--accept-pca-change"])
    assert accepted.exit_code == 0 and len(accepted.stdout.splitlines()) == 6, accepted.output
    assert after_device(accepted.stderr) == [f"note: {checkpoint}: --accept-pca-change: going on with {change}"]
    _, published, _, _ = trained
    given = CliRunner().invoke(main, [str(published), str(images[0]), "--classes", str(classes), "--pca", str(stats)])
    assert given.exit_code == 1 and after_device(given.stderr) == [
        f"Error: {published}: other colour statistics than the run's: trained with the published ImageNet "
        f"statistics (no --pca), now {described(stats)}; pass --pca with the file it was trained with, or "
        "--accept-pca-change to go on with these"]


def test_a_checkpoint_from_before_the_records_is_accepted_with_a_note(trained, tmp_path):
    net, checkpoint, classes, images = trained
    state = torch.load(checkpoint, weights_only=True)
    del state["statistics"], state["classes"]
    old = save_checkpoint(state, tmp_path / "old", is_best=False)
    result = CliRunner().invoke(main, [str(old), str(images[0]), "--classes", str(classes)])
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 6, result.output
    assert after_device(result.stderr) == [f"note: {old} was written before checkpoints recorded the sha256 of its "
                                          "pca.json and its class table: not checked"]
