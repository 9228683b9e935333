"""pack: a prepared tree into pre-shuffled shards, deterministic for a seed, resumable; `prepare` of the shards
lists exactly the samples and labels of the tree's lists."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from tests.conftest import write_image_tree, write_lists
from tests.shard_data import read_list
from tools.pack import main as pack_main
from tools.prepare_imagenet import main as prepare_main


def pack(lists: Path, root: Path, out: Path, *args: str) -> dict:
    result = CliRunner().invoke(pack_main, ["--lists", str(lists), "--root", str(root), "--out", str(out),
                                            "--workers", "1", "--shard-size", "4", *args])
    assert result.exit_code == 0, result.output
    return json.loads((out / "manifest.json").read_text())


def tree(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "tree"
    written = write_image_tree(root, {"train": 3, "val": 2})  # 9 train, 6 val
    return root, write_lists(root, written, tmp_path / "lists")


def test_prepare_of_the_shards_lists_the_same_samples(tmp_path: Path) -> None:
    root, lists = tree(tmp_path)
    manifest = pack(lists, root, tmp_path / "wds", "--seed", "5")
    assert manifest["samples"] == 15 and [s["samples"] for s in manifest["shards"]] == [4, 4, 1, 4, 2]
    result = CliRunner().invoke(prepare_main, [str(tmp_path / "wds"), "--out", str(tmp_path / "wl"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "wl" / "classes.tsv").read_text() == (lists / "classes.tsv").read_text()
    for split in ("train", "val"):
        source = read_list(lists / f"{split}.txt")
        packed = read_list(tmp_path / "wl" / f"{split}.txt")
        by_key = {Path(rel).stem: label for rel, label in source}
        assert sorted((path.split(":")[1], label) for path, label in packed) == sorted(by_key.items())
    # the training order is numpy's permutation for the seed, the bytes the files' own
    source = read_list(lists / "train.txt")
    order = np.random.default_rng(5).permutation(len(source))
    packed = read_list(tmp_path / "wl" / "train.txt")
    assert [path.split(":")[1] for path, _ in packed] == [Path(source[i][0]).stem for i in order]
    shard, key = packed[0][0].split(":")
    with tarfile.open(tmp_path / "wds" / shard) as tar:
        assert tar.extractfile(f"{key}.jpg").read() == (root / source[order[0]][0]).read_bytes()
    assert (tmp_path / "wds" / "imagenet1k-train-0000.idx").read_text().startswith("v1.2 4\n")


def test_same_seed_same_shards_and_resume(tmp_path: Path) -> None:
    root, lists = tree(tmp_path)
    first = pack(lists, root, tmp_path / "a", "--seed", "1")
    assert pack(lists, root, tmp_path / "b", "--seed", "1")["shards"] == first["shards"]
    assert pack(lists, root, tmp_path / "c", "--seed", "2")["shards"] != first["shards"]
    kept = tmp_path / "a" / "imagenet1k-train-0000.tar"
    stamp = kept.stat().st_mtime_ns
    (tmp_path / "a" / "imagenet1k-train-0001.tar").unlink()  # as if killed before this shard was renamed
    assert pack(lists, root, tmp_path / "a", "--seed", "1")["shards"] == first["shards"]
    assert kept.stat().st_mtime_ns == stamp
    result = CliRunner().invoke(pack_main, ["--lists", str(lists), "--root", str(root), "--out", str(tmp_path / "a"),
                                            "--seed", "9"])
    assert result.exit_code != 0 and "holds shards packed with" in result.output


def test_resize_stores_the_shorter_side(tmp_path: Path) -> None:
    root, lists = tree(tmp_path)
    pack(lists, root, tmp_path / "wds", "--resize", "64")
    with tarfile.open(tmp_path / "wds" / "imagenet1k-validation-0000.tar") as tar:
        jpgs = [m for m in tar.getmembers() if m.name.endswith(".jpg")]
        for member in jpgs:
            with Image.open(tar.extractfile(member)) as image:
                assert min(image.size) == 64


def test_resize_gives_the_same_bytes_from_a_copy_of_the_tree(tmp_path: Path) -> None:
    """prepare's copies record their source's size and mtime; pack's do not: a copy of the tree (new mtimes)
    packs to the same shards, byte for byte."""
    import os
    import shutil

    root, lists = tree(tmp_path)
    first = pack(lists, root, tmp_path / "a", "--resize", "64")
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    for path in copy.rglob("*.JPEG"):
        os.utime(path, ns=(1, 1))
    assert pack(lists, copy, tmp_path / "b", "--resize", "64")["shards"] == first["shards"]
    with tarfile.open(tmp_path / "a" / "imagenet1k-train-0000.tar") as tar:
        data = tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith(".jpg"))).read()
    assert b"size=" not in data and b"mtime_ns=" not in data


def test_resize_names_a_file_that_does_not_decode(tmp_path: Path) -> None:
    root, lists = tree(tmp_path)
    victim = next((root / "train").rglob("*.JPEG"))
    victim.write_bytes(victim.read_bytes()[:300])  # cut short after prepare listed it
    result = CliRunner().invoke(pack_main, ["--lists", str(lists), "--root", str(root), "--out", str(tmp_path / "w"),
                                            "--workers", "1", "--resize", "64"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{victim}: does not decode" in result.output and "prepare --check decode" in result.output


def test_keys_stay_unique_when_a_suffixed_key_is_already_taken():
    """train/c0/x_2, train/c1/x, train/c2/x: the third x must not take x_2, which the first file holds."""
    from tools.packing.shards import _keys

    keys = _keys([("train/c0/x_2.JPEG", 0), ("train/c1/x.JPEG", 1), ("train/c2/x.JPEG", 2)])
    assert len(set(keys)) == 3 and keys[:2] == ["x_2", "x"]
