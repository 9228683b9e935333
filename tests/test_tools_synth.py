"""make-demo-data and make-bench-data: layout, counts, sizes, grayscale share, JPEG weight, determinism."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pipeline.errors import InputError
from tools import make_bench_data, make_demo_data
from tools.synth import sets
from tools.synth.images import class_ids


def digests(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under root."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_demo_layout_sizes_and_grayscale_share(tmp_path):
    written = sets.make_demo_data(tmp_path, classes=2, train_per_class=20, val_per_class=3, seed=0)
    assert written == {"train": 40, "val": 6}
    for split, per_class in (("train", 20), ("val", 3)):
        folders = sorted(p.name for p in (tmp_path / split).iterdir())
        assert folders == class_ids()[:2]
        for folder in folders:
            assert len(list((tmp_path / split / folder).glob("*.JPEG"))) == per_class
    modes, sides = [], []
    for path in (tmp_path / "train").rglob("*.JPEG"):
        with Image.open(path) as image:
            assert image.format == "JPEG"
            modes.append(image.mode)
            sides.extend(image.size)
    assert min(sides) >= 300 and max(sides) <= 700
    # One image in 20 is grayscale: 2 of the 40 training images, the rest RGB.
    assert modes.count("L") == 2 and modes.count("RGB") == 38


def test_demo_is_deterministic_and_seeded(tmp_path):
    sets.make_demo_data(tmp_path / "a", classes=3, train_per_class=2, val_per_class=1, seed=5, workers=1)
    sets.make_demo_data(tmp_path / "b", classes=3, train_per_class=2, val_per_class=1, seed=5, workers=2)
    sets.make_demo_data(tmp_path / "c", classes=3, train_per_class=2, val_per_class=1, seed=6, workers=1)
    a, b, c = digests(tmp_path / "a"), digests(tmp_path / "b"), digests(tmp_path / "c")
    assert len(a) == 9 and a == b
    assert a.keys() == c.keys() and not set(a.values()) & set(c.values())


def test_demo_classes_differ_in_content_not_only_colour(tmp_path):
    """Two images of one class differ in colour; their mean colours do not identify the class."""
    sets.make_demo_data(tmp_path, classes=2, train_per_class=4, val_per_class=0, seed=0)
    means = {}
    for folder in class_ids()[:2]:
        means[folder] = [np.asarray(Image.open(p).convert("RGB"), np.float32).mean((0, 1))
                         for p in sorted((tmp_path / "train" / folder).glob("*.JPEG"))]
    spread_within = np.mean([np.linalg.norm(m - np.mean(v, 0)) for v in means.values() for m in v])
    centres = [np.mean(v, 0) for v in means.values()]
    assert spread_within > 10  # colours vary inside a class
    assert spread_within > 0.5 * np.linalg.norm(centres[0] - centres[1])


def test_demo_rejects_bad_class_counts(tmp_path):
    for count in ("0", "1081"):
        result = CliRunner().invoke(make_demo_data.main, [str(tmp_path), "--classes", count])
        assert result.exit_code == 2
        assert f"Invalid value for '--classes': {count} is not in the range 1<=x<=1080" in result.output
    with pytest.raises(InputError, match="--classes 1081: the demo set has 1 to 1080 classes"):
        sets.make_demo_data(tmp_path, classes=1081)


def test_bench_layout_sizes_and_weight(tmp_path):
    sizes = sets.make_bench_data(tmp_path, count=30, val_count=3, classes=3, seed=0, workers=2)
    files = sorted((tmp_path / "train").rglob("*.JPEG"))
    assert len(files) == 30 and len(sizes["train"]) == 30 and len(sizes["val"]) == 3
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["n00000000", "n00000001", "n00000002"]
    assert [len(list(d.iterdir())) for d in sorted((tmp_path / "train").iterdir())] == [10, 10, 10]
    assert sorted(sizes["train"]) == sorted(p.stat().st_size for p in files)
    dims = []
    for path in files:
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            dims.append(image.size)
    long_sides = [max(d) for d in dims]
    # Mostly 500 px long sides (ImageNet's usual size), both orientations present.
    assert sum(side == 500 for side in long_sides) >= 12
    assert any(w > h for w, h in dims) and any(h > w for w, h in dims)
    pixels = np.mean([w * h for w, h in dims])
    assert 120_000 < pixels < 300_000  # 500x375 = 187,500
    assert 75_000 < np.mean(sizes["train"]) < 150_000  # ~100 KB like real photos


def test_bench_is_deterministic_across_workers(tmp_path):
    sets.make_bench_data(tmp_path / "a", count=6, classes=2, seed=1, workers=1)
    sets.make_bench_data(tmp_path / "b", count=6, classes=2, seed=1, workers=2)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")


def test_bench_cli_reports_average_and_rejects_bad_quality(tmp_path):
    result = CliRunner().invoke(make_bench_data.main, [str(tmp_path), "--count", "2", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "2 images" in result.output and "KB on average" in result.output
    result = CliRunner().invoke(make_bench_data.main, [str(tmp_path), "--count", "2", "--quality", "0"])
    assert result.exit_code == 1 and result.output.strip() == "Error: --quality 0: a JPEG quality is 1-100"


def test_more_than_ten_classes_are_distinct_triples_in_label_order(tmp_path):
    """--classes 1000 (ImageNet's count): every class its own (shape, pattern, hue); folder names sort in label
    order, as prepare numbers them; a class's images carry its hue."""
    from tools.synth.images import MAX_CLASSES, class_spec

    ids = class_ids(1000)
    assert len(set(ids)) == 1000 and sorted(ids) == ids
    assert len({class_spec(i, 1000) for i in range(1000)}) == 1000
    assert class_ids(10) == class_ids()  # the demo's ten classes are unchanged
    sets.make_demo_data(tmp_path, classes=92, train_per_class=1, val_per_class=0, seed=0)
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == class_ids(92)
    # classes 0 and 90: the same shape and pattern, another hue; the first eleven differ in shape, pattern and hue
    assert class_spec(0, 92)[:2] == class_spec(90, 92)[:2] and class_spec(0, 92)[2] != class_spec(90, 92)[2]
    first = [class_spec(i, 11) for i in range(11)]
    assert [len({spec[k] for spec in first}) for k in range(3)] == [10, 9, 11]
    assert MAX_CLASSES == 1080
    assert not (tmp_path / "val").exists()  # --val-per-class 0: no empty class folders for prepare to refuse
