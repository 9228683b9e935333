"""Shard lists on the CPU graph: two ranks' training epochs (the step count model.run expects, each sample once),
a corrupt JPEG inside a shard named as the list names it (TAR:KEY), and how mixed training batches are."""
from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.config import DataConfig
from pipeline.dali_loader import find_failed_file
from pipeline.errors import InputError
from pipeline.loader import make_loader
from pipeline.shards import Member, format_index
from tests.shard_data import jpeg, sample, write_shards, write_tar
from tools.prepare_imagenet import main as prepare_main


def prepare(wds: Path, out: Path, *extra: str) -> None:
    result = CliRunner().invoke(prepare_main, [str(wds), "--out", str(out), "--workers", "1", *extra])
    assert result.exit_code == 0, result.output


def config(base: Path, **changes) -> DataConfig:
    values = dict(root=base / "wds", train_list=base / "out" / "train.txt", val_list=base / "out" / "val.txt",
                  batch_size=1, device="cpu", device_id=None, num_threads=1, seed=5)
    values.update(changes)
    return DataConfig(**values)


def labels_of(loader) -> list[list[int]]:
    return [labels.tolist() for _, labels in loader]


def test_two_ranks_take_the_steps_their_length_says(tmp_path: Path) -> None:
    """3 tars x 5 samples: DALI's split gives rank 0 7 samples and rank 1 8 (pipeline.splits.shard_bounds), but
    its iterator ends every rank's training epoch after 15 // 2 = 7 (LastBatchPolicy.DROP): len(loader) must
    say so on both ranks, as model.run trains min over ranks of len(loader) steps and the loader is made anew
    each epoch."""
    write_shards(tmp_path / "wds", train_tars=3, per_tar=5, val_tars=1, labels=15)
    prepare(tmp_path / "wds", tmp_path / "out")
    for batch_size, expected in ((1, 7), (2, 3)):  # 7 // 1, 7 // 2
        for seed in (5, 6):  # model.run builds each epoch's loader with seed + epoch
            for rank in range(2):
                loader = make_loader(config(tmp_path, batch_size=batch_size, seed=seed), "train", shard_id=rank,
                                     num_shards=2)
                assert len(loader) == expected and loader.num_images == expected * batch_size
                batches = labels_of(loader)
                assert [len(batch) for batch in batches] == [batch_size] * expected


def broken_jpeg() -> bytes:
    """A JPEG whose header walk is sound (prepare's header check passes it) but whose first Huffman table is
    impossible (every code-length count 255): decoders refuse it."""
    data = bytearray(jpeg(1, 64, 64))
    dht = data.index(b"\xff\xc4")
    data[dht + 5:dht + 21] = b"\xff" * 16
    return bytes(data)


@pytest.mark.parametrize("split", ["val", "train"])
def test_a_corrupt_jpeg_in_a_shard_is_named_as_the_list_names_it(tmp_path: Path, split: str) -> None:
    rows = [sample(f"n10000000_{i}", 0, i) for i in range(4)]
    rows[2] = (rows[2][0], dict(rows[2][1], jpg=broken_jpeg()))
    tar = "imagenet1k-train-0000.tar" if split == "train" else "imagenet1k-validation-00.tar"
    write_tar(tmp_path / "wds" / tar, rows)
    prepare(tmp_path / "wds", tmp_path / "out")  # the header check lists it
    listed = (tmp_path / "out" / f"{split}.txt").read_text()
    assert f"{tar}:n10000000_2 0" in listed
    with pytest.raises(InputError) as caught:
        for _ in make_loader(config(tmp_path, batch_size=2), split):  # type: ignore[arg-type]
            pass
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'wds' / tar}:n10000000_2: DALI could not read or decode this image")
    assert "--check decode" in message and "\n" not in message
    prepare(tmp_path / "wds", tmp_path / "decoded", "--check", "decode")  # and what the message advises drops it
    assert "n10000000_2" not in (tmp_path / "decoded" / f"{split}.txt").read_text()


def test_an_unnamed_failure_in_a_shard_names_the_sample_that_is_no_image(tmp_path: Path) -> None:
    """DALI names shard samples itself; should it not, the loader reads each sample's first bytes, not the
    tar's (a tar is no image: the old fallback named the first sample)."""
    rows = [sample(f"k{i}", 0, i) for i in range(3)]
    rows[1] = ("k1", dict(rows[1][1], jpg=b"<html>404 not found</html>"))
    write_tar(tmp_path / "a.tar", rows)
    members = []
    with tarfile.open(tmp_path / "a.tar") as tar:
        for key, _ in rows:
            found = {m.name.split(".")[1]: m for m in tar.getmembers() if m.name.startswith(key + ".")}
            members.append([Member(ext, found[ext].offset_data, found[ext].size, found[ext].name)
                            for ext in ("jpg", "cls")])
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "a.tar.idx").write_text(format_index(members))
    entries = [(f"a.tar:k{i}", 0) for i in range(3)]
    assert find_failed_file("nvImageCodec failure: '#4'", tmp_path, entries, [tmp_path]) == tmp_path / "a.tar:k1"
    assert find_failed_file("nvImageCodec failure: '#4'", tmp_path, entries) is None  # no index: no guess


def test_class_sorted_shards_give_batches_of_few_classes_with_a_small_buffer(tmp_path: Path) -> None:
    """tools/shard_mixing on 4 classes x 40 samples, tars of 20, a buffer of 8: class-sorted tars give far more
    same-class neighbours than pre-shuffled ones, which sit near a perfect shuffle's 1/4."""
    from tools.packing.mixing import measure, same_class_share, write_tars
    from tools.shard_mixing import _prepared as prepared

    assert same_class_share(np.array([[1, 1, 2, 2], [3, 3, 3, 4]])) == pytest.approx(4 / 6)  # by hand
    labels = [label for label in range(4) for _ in range(40)]
    shares = {}
    for name, order in (("sorted", labels), ("shuffled", list(np.random.default_rng(1).permutation(labels)))):
        write_tars(tmp_path / name / "wds", order, 20)
        train_list = prepared(tmp_path / name / "wds", tmp_path / name / "lists")
        shares[name] = measure(tmp_path / name / "wds", train_list, [8], 16, [0])[0]["same_class"]
    assert shares["sorted"] > 0.6 and shares["shuffled"] < 0.45
