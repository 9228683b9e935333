"""compute-pca on a shard list (prepare's lists of webdataset tars): the same pca.json as from the same JPEGs
as files, with both backends; a shard cut short after prepare skips its lost samples and says why."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.pca import load_pca
from tests.shard_data import as_files, prepared_shards, read_list
from tools.compute_pca import main

STATISTICS = ("eigval", "eigvec", "mean", "std", "covariance", "n_images", "n_pixels", "n_skipped")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("pcashards")
    prepared_shards(base, train_tars=2, per_tar=5, val_tars=1, labels=4)
    as_files(base / "wds", read_list(base / "lists" / "train.txt"), base / "files", base / "files.txt")
    return base


def run(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.mark.parametrize("backend", ["pil", "dali"])
def test_shards_give_the_pca_of_the_same_jpegs_as_files(data: Path, tmp_path: Path, backend: str) -> None:
    code, output = run("--list", data / "lists" / "train.txt", "--root", data / "wds", "--out", tmp_path / "s.json",
                       "--workers", 1, "--backend", backend)
    assert code == 0, output
    code, output = run("--list", data / "files.txt", "--root", data / "files", "--out", tmp_path / "f.json",
                       "--workers", 1, "--backend", backend)
    assert code == 0, output
    shards, files = (json.loads((tmp_path / name).read_text()) for name in ("s.json", "f.json"))
    assert shards["n_images"] == 10 and shards["n_skipped"] == 0
    for key in STATISTICS:  # the sums are exact integers: equal, not merely close
        np.testing.assert_allclose(shards[key], files[key], rtol=0, atol=1e-12, err_msg=key)
    np.testing.assert_array_equal(load_pca(tmp_path / "s.json").mean_image, load_pca(tmp_path / "f.json").mean_image)


@pytest.mark.parametrize("backend", ["pil", "dali"])
def test_a_shard_cut_short_after_prepare_skips_its_lost_samples(data: Path, tmp_path: Path, backend: str) -> None:
    wds = tmp_path / "wds"
    wds.mkdir()
    for tar in (data / "wds").glob("*.tar"):
        whole = tar.read_bytes()
        (wds / tar.name).write_bytes(whole[: len(whole) // 2] if tar.name == "imagenet1k-train-0001.tar" else whole)
    code, output = run("--list", data / "lists" / "train.txt", "--root", wds, "--out", tmp_path / "p.json",
                       "--workers", 1, "--backend", backend)
    assert code == 0, output
    got = json.loads((tmp_path / "p.json").read_text())
    assert got["n_images"] + got["n_skipped"] == 10 and 0 < got["n_skipped"] < 5
    assert all(line.startswith("imagenet1k-train-0001.tar:") and "ends inside" in line for line in got["skipped"])
