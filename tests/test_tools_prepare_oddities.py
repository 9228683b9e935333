"""Images that are not what they look like: strips too elongated to train on, links that would list a file twice,
class tars where class folders should be; and the list parser's word on a tab before the label."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from pipeline.errors import InputError
from pipeline.filelist import read_file_list
from tests.test_tools_prepare_check import jpeg_bytes, read_rejected, read_report, run_prepare, small_rgb


def test_extreme_aspect_ratios_are_rejected_with_the_reason(tmp_path: Path) -> None:
    root, out = tmp_path / "root", tmp_path / "out"
    folder = root / "train" / "n01"
    folder.mkdir(parents=True)
    sizes = {"strip.JPEG": (30000, 20), "tall.JPEG": (12, 600), "ratio20.JPEG": (400, 20), "ratio10.JPEG": (500, 50),
             "photo.JPEG": (64, 48)}
    for name, size in sizes.items():
        Image.new("RGB", size, (90, 120, 30)).save(folder / name, "JPEG")
    result = run_prepare(root, "--out", out)
    assert result.exit_code == 0, result.output
    listed = sorted(rel.split("/")[-1] for rel, _ in read_file_list(out / "train.txt"))
    assert listed == ["photo.JPEG", "ratio10.JPEG", "ratio20.JPEG"]  # 20:1 is still kept by default
    rejected = read_rejected(out)
    assert rejected["train/n01/strip.JPEG"] == "too elongated (30000x20, 1500.0:1; --max-aspect 20)"
    assert rejected["train/n01/tall.JPEG"] == "too elongated (12x600, 50.0:1; --max-aspect 20)"
    assert run_prepare(root, "--out", out, "--max-aspect", "60").exit_code == 0
    assert len(read_file_list(out / "train.txt")) == 4
    assert run_prepare(root, "--out", out, "--max-aspect", "5").exit_code == 0
    assert "train/n01/ratio10.JPEG" in read_rejected(out)


def test_each_real_file_is_listed_once(tmp_path: Path) -> None:
    root, out, elsewhere = tmp_path / "root", tmp_path / "out", tmp_path / "elsewhere"
    for folder in ("train/n01", "train/n02", "val/n01", "val/n02"):
        (root / folder).mkdir(parents=True)
    elsewhere.mkdir()
    for seed, rel in enumerate(["train/n01/a.JPEG", "train/n02/x.JPEG", "val/n01/v.JPEG", "val/n02/z.JPEG"]):
        small_rgb(seed=seed).save(root / rel)
    small_rgb(seed=9).save(elsewhere / "far.JPEG")
    (root / "train" / "n01" / "0link.JPEG").symlink_to("a.JPEG")  # before the real file in scan order
    (root / "train" / "n01" / "b_link.JPEG").symlink_to(root / "train" / "n01" / "a.JPEG")
    (root / "val" / "n02" / "y.JPEG").symlink_to("../../train/n02/x.JPEG")  # a training image in val
    (root / "train" / "n02" / "far1.JPEG").symlink_to(elsewhere / "far.JPEG")  # outside ROOT: listed once
    (root / "train" / "n02" / "far2.JPEG").symlink_to(elsewhere / "far.JPEG")
    result = run_prepare(root, "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(rel for rel, _ in read_file_list(out / "train.txt")) == [
        "train/n01/a.JPEG", "train/n02/far1.JPEG", "train/n02/x.JPEG"]
    assert sorted(rel for rel, _ in read_file_list(out / "val.txt")) == ["val/n01/v.JPEG", "val/n02/z.JPEG"]
    ignored = read_report(out / "ignored.tsv")
    assert ignored == {
        "train/n01/0link.JPEG": "duplicate (a link to the same file as train/n01/a.JPEG, which is listed)",
        "train/n01/b_link.JPEG": "duplicate (a link to the same file as train/n01/a.JPEG, which is listed)",
        "train/n02/far2.JPEG": "duplicate (a link to the same file as train/n02/far1.JPEG, which is listed)",
        "val/n02/y.JPEG": "duplicate (a link to the same file as train/n02/x.JPEG, which is listed)"}
    assert "files under ROOT: 9 = 5 listed + 0 repaired and listed + 0 rejected + 4 ignored" in result.output


def class_tar(path: Path, members: dict[str, bytes]) -> None:
    """A tar like those inside ILSVRC2012_img_train.tar: member name -> bytes."""
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def tars_tree(tmp_path: Path) -> Path:
    """train/ with two class tars (as the official training archive unpacks), val/ sorted into class folders."""
    root = tmp_path / "root"
    (root / "train").mkdir(parents=True)
    for index, wnid in enumerate(("n01440764", "n01443537")):
        class_tar(root / "train" / f"{wnid}.tar",
                  {f"{wnid}_{i}.JPEG": jpeg_bytes(small_rgb(seed=index + i)) for i in range(2)})
        (root / "val" / wnid).mkdir(parents=True)
        small_rgb(seed=index).save(root / "val" / wnid / f"ILSVRC2012_val_0000000{index + 1}.JPEG")
    return root


def test_class_tars_in_train_are_refused_with_the_command_or_unpacked(tmp_path: Path) -> None:
    root, out = tars_tree(tmp_path), tmp_path / "out"
    refused = run_prepare(root, "--out", out)
    assert refused.exit_code == 1
    last = refused.output.strip().splitlines()[-1]
    assert last == (f"Error: {root / 'train'}: holds 2 class tars (n01440764.tar, n01443537.tar) that are not "
                    "unpacked into class folders, so no training image could be listed from them; run "
                    f"`imagenet-tools prepare {root} --out {out} --unpack` to unpack each into its class folder "
                    "<wnid>/ beside it first")
    assert not (out / "train.txt").exists()
    result = run_prepare(root, "--out", out, "--unpack")
    assert result.exit_code == 0, result.output
    assert read_file_list(out / "train.txt") == [("train/n01440764/n01440764_0.JPEG", 0),
                                                ("train/n01440764/n01440764_1.JPEG", 0),
                                                ("train/n01443537/n01443537_0.JPEG", 1),
                                                ("train/n01443537/n01443537_1.JPEG", 1)]
    assert (root / "train" / "n01440764" / "n01440764_1.JPEG").read_bytes() == jpeg_bytes(small_rgb(seed=1))
    assert not list((root / "train").glob(".*"))  # no temporary folder left
    assert "unpacked 2 class tars beside themselves" in result.output
    assert read_report(out / "ignored.tsv")["train/n01440764.tar"].startswith("archive (a class tar; its class")
    again = run_prepare(root, "--out", out)  # unpacked: a plain run now lists them, no --unpack needed
    assert again.exit_code == 0 and len(read_file_list(out / "train.txt")) == 4


@pytest.mark.parametrize("member", ["../escaped.JPEG", "/tmp/absolute.JPEG", "sub/../../escaped.JPEG"])
def test_unpack_refuses_members_outside_the_class_folder(tmp_path: Path, member: str) -> None:
    root, out = tars_tree(tmp_path), tmp_path / "out"
    class_tar(root / "train" / "n01440764.tar", {"fine.JPEG": jpeg_bytes(small_rgb()), member: b"x"})
    result = run_prepare(root, "--out", out, "--unpack")
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: {root / 'train' / 'n01440764.tar'}: member {member!r} has ")
    assert "refusing to unpack it (nothing was written)" in last
    assert not (root / "train" / "n01440764").exists() and not (root / "train" / "escaped.JPEG").exists()
    assert not Path("/tmp/absolute.JPEG").exists()
    assert not list((root / "train").glob(".*"))


def test_a_tab_before_the_label_is_named(tmp_path: Path) -> None:
    lists = tmp_path / "train.txt"
    lists.write_text("train/n01/a.JPEG 0\ntrain/n01/b c.JPEG\t1\n")
    with pytest.raises(InputError) as error:
        read_file_list(lists)
    assert str(error.value) == (f"{lists}:2: a tab before the label; the label must follow a space: "
                                "'<path> <label>', e.g. 'train/n01/b c.JPEG 1'")
    lists.write_text("train/n01/tab\tin name.JPEG 0\n")  # a tab inside a name is not the separator
    assert read_file_list(lists) == [("train/n01/tab\tin name.JPEG", 0)]
