"""prepare on the hub's parquet files (ILSVRC/imagenet-1k layout): shards written a row group at a time and
kept across runs, a file cut short named, the test split's -1 labels ignored, lists as for shards."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.shard_data import jpeg, read_list
from tools.prepare_imagenet import main as prepare_main

pa = pytest.importorskip("pyarrow", reason="the hub extra (pyarrow) is not installed")
import pyarrow.parquet as pq  # noqa: E402
from tests.test_tools_prepare_check import read_report


def write_parquet(path: Path, rows: list[tuple[str, bytes | None, int]], row_group_size: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({"image": pa.array([{"bytes": b, "path": p} for p, b, _ in rows], type=image),
                      "label": pa.array([label for *_, label in rows], type=pa.int64())})
    pq.write_table(table, path, row_group_size=row_group_size)


def hub(root: Path) -> dict[str, list[tuple[str, bytes, int]]]:
    train = [(f"n0000000{label}_{i}.JPEG", jpeg(i), label) for i, label in enumerate([0, 1, 2, 1, 0])]
    val = [(f"ILSVRC2012_val_0000000{i + 1}.JPEG", jpeg(10 + i), label) for i, label in enumerate([2, 0, 1])]
    write_parquet(root / "data" / "train-00000-of-00002.parquet", train[:3])
    write_parquet(root / "data" / "train-00001-of-00002.parquet", train[3:])
    write_parquet(root / "data" / "validation-00000-of-00001.parquet", val)
    write_parquet(root / "data" / "test-00000-of-00001.parquet", [("ILSVRC2012_test_00000001.JPEG", jpeg(20), -1)])
    (root / "README.md").write_text("dataset card")
    return {"train": train, "val": val}


def run(root: Path, out: Path):
    return CliRunner().invoke(prepare_main, [str(root), "--out", str(out), "--workers", "1"])


def test_parquet_to_shards_and_lists(tmp_path: Path) -> None:
    rows = hub(tmp_path / "hub")
    result = run(tmp_path / "hub", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "layout parquet" in result.output and f"lists relative to {(tmp_path / 'out' / 'shards').resolve()}" \
        in result.output
    train = read_list(tmp_path / "out" / "train.txt")
    assert [label for _, label in train] == [label for *_, label in rows["train"]]
    assert train[0] == ("hub-train-00000.tar:n00000000_0", 0)
    assert [label for _, label in read_list(tmp_path / "out" / "val.txt")] == [2, 0, 1]
    with tarfile.open(tmp_path / "out" / "shards" / "hub-train-00001.tar") as tar:
        assert tar.extractfile("n00000001_3.jpg").read() == rows["train"][3][1]
        assert tar.extractfile("n00000001_3.cls").read() == b"1"
    ignored = read_report(tmp_path / "out" / "ignored.tsv")
    assert ignored["data/test-00000-of-00001.parquet"] == "test split (label -1: no labels)"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["splits"]["train"]["images"] == 5 and summary["splits"]["val"]["images"] == 3


def test_a_file_cut_short_and_resuming(tmp_path: Path) -> None:
    hub(tmp_path / "hub")
    cut = tmp_path / "hub" / "data" / "train-00001-of-00002.parquet"
    whole = cut.read_bytes()
    cut.write_bytes(whole[: len(whole) // 2])
    result = run(tmp_path / "hub", tmp_path / "out")
    assert result.exit_code == 0, result.output
    rejected = read_report(tmp_path / "out" / "rejected.tsv")
    assert rejected["data/train-00001-of-00002.parquet"].startswith("cannot read the parquet file")
    assert len(read_list(tmp_path / "out" / "train.txt")) == 3
    assert not (tmp_path / "out" / "shards" / "hub-train-00001.tar").exists()  # no half shard left
    first = tmp_path / "out" / "shards" / "hub-train-00000.tar"
    stamp = first.stat().st_mtime_ns
    cut.write_bytes(whole)  # downloaded again: the next run converts only that file
    result = run(tmp_path / "hub", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert first.stat().st_mtime_ns == stamp
    assert len(read_list(tmp_path / "out" / "train.txt")) == 5


def test_rows_without_a_label_in_a_labelled_split(tmp_path: Path) -> None:
    write_parquet(tmp_path / "hub" / "train-00000-of-00001.parquet",
                  [("n00000000_0.JPEG", jpeg(0), 0), ("n00000000_1.JPEG", jpeg(1), -1), ("x.JPEG", None, 0)])
    result = run(tmp_path / "hub", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert read_list(tmp_path / "out" / "train.txt") == [("hub-train-00000.tar:n00000000_0", 0)]
    ignored = read_report(tmp_path / "out" / "ignored.tsv")
    assert ignored["train-00000-of-00001.parquet:row1"] == "label -1 (no label)"
    assert ignored["train-00000-of-00001.parquet:row2"] == "no image bytes"
    # a second run keeps the shard and reports the rows it skipped again; the record of them is not a file to list
    shard = tmp_path / "out" / "shards" / "hub-train-00000.tar"
    stamp = shard.stat().st_mtime_ns
    result = run(tmp_path / "hub", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert read_report(tmp_path / "out" / "ignored.tsv") == ignored
    # a shard without its record (an earlier version, or a stop between the two writes) is kept and named
    (tmp_path / "out" / "shards" / ".hub-train-00000.skipped.tsv").unlink()
    result = run(tmp_path / "hub", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert shard.stat().st_mtime_ns == stamp
    again = read_report(tmp_path / "out" / "ignored.tsv")
    assert "delete" in again["train-00000-of-00001.parquet"] and "are not recorded" in again["train-00000-of-00001.parquet"]


def test_a_full_disk_or_quota_is_one_line(tmp_path: Path, monkeypatch) -> None:
    import errno

    from tools.prepare import parquet

    hub(tmp_path / "hub")
    for code in (errno.ENOSPC, errno.EDQUOT):
        def full(path, samples, code=code):
            raise OSError(code, "no space")
        monkeypatch.setattr(parquet, "write_shard", full)
        result = run(tmp_path / "hub", tmp_path / "out")
        assert result.exit_code == 1 and "disk full; free some space and run again" in result.output, result.output


def test_without_pyarrow_the_error_names_the_extra(tmp_path: Path, monkeypatch) -> None:
    hub(tmp_path / "hub")
    monkeypatch.setitem(__import__("sys").modules, "pyarrow.parquet", None)  # import fails as if not installed
    result = run(tmp_path / "hub", tmp_path / "out")
    assert result.exit_code != 0
    assert "Error: reading parquet files needs pyarrow: pip install 'alexnet-dali[hub]'" in result.output


def test_resize_is_refused_before_anything_is_converted(tmp_path: Path) -> None:
    hub(tmp_path / "hub")
    result = CliRunner().invoke(prepare_main, [str(tmp_path / "hub"), "--out", str(tmp_path / "out"), "--resize", "256",
                                               "--resized-root", str(tmp_path / "r256"), "--workers", "1"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--resize does not apply to webdataset shards or hub parquet files" in result.output
    assert not (tmp_path / "out" / "shards").exists() or not any((tmp_path / "out" / "shards").iterdir())
