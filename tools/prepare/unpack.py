"""train/ as the official training archive unpacks: one tar per class (n01440764.tar, ...), not yet class folders.

Without --unpack prepare refuses such a tree in one line that gives the one command to run (listing nothing
from them and exiting 0 would send the user to model.train, which sends them back to prepare). With --unpack
each `<wnid>.tar` whose class folder is missing is unpacked beside it into `<wnid>/`:
- every member is checked first: only plain files and folders, no absolute path, no `..` (a tar that fails is
  refused and nothing of it is written); Python's `filter="data"` guards the extraction as well;
- it is unpacked into a hidden `.<wnid>.unpacking/` and renamed to `<wnid>/` when complete, so a class folder
  only ever appears whole; an interrupted unpack leaves the hidden folder, which the next --unpack replaces.
"""
from __future__ import annotations

import os
import re
import shutil
import tarfile
from pathlib import Path, PurePosixPath

from pipeline.errors import InputError
from tools.prepare.places import CLS_LOC_BASES, SPLIT_FOLDERS

CLASS_TAR = re.compile(r"n\d{8}\.tar$")


def class_tars(root: Path) -> list[Path]:
    """The `<wnid>.tar` files directly in a train folder of ROOT whose class folder `<wnid>/` is missing."""
    found = []
    for base in ("", *CLS_LOC_BASES):
        for name in SPLIT_FOLDERS["train"]:
            folder = root / base / name if base else root / name
            if folder.is_dir():
                found += sorted(path for path in folder.iterdir()
                                if CLASS_TAR.match(path.name) and path.is_file() and not path.with_suffix("").is_dir())
    return found


def refuse_class_tars(root: Path, out: Path) -> None:
    """Raise, naming the command that unpacks them, if ROOT's train folder holds class tars not unpacked."""
    tars = class_tars(root)
    if tars:
        names = ", ".join(tar.name for tar in tars[:2]) + (", ..." if len(tars) > 2 else "")
        raise InputError(f"{tars[0].parent}: holds {len(tars)} class tar{'s' if len(tars) > 1 else ''} "
                         f"({names}) that are not unpacked into class folders, so no training image "
                         f"could be listed from them; run `imagenet-tools prepare {root} --out {out} --unpack` "
                         "to unpack each into its class folder <wnid>/ beside it first")


def unpack_class_tars(root: Path) -> list[str]:
    """Unpack every tar of `class_tars` (see the module docstring); returns the class folders made."""
    made = []
    for tar in class_tars(root):
        unpack_one(tar)
        made.append(str(tar.with_suffix("")))
    return made


def _unsafe(member: tarfile.TarInfo) -> str:
    """Why a tar member must not be unpacked, or ""."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or member.name.startswith("\\") or re.match(r"[A-Za-z]:", member.name):
        return "has an absolute path"
    if ".." in path.parts:
        return "has '..' in its path (it would be written outside its class folder)"
    if not (member.isfile() or member.isdir()):
        return "is a link or a device, not a file"
    return ""


def unpack_one(tar: Path) -> None:
    """Unpack `tar` (n01440764.tar) into `n01440764/` beside it.

    Raises:
        InputError: not a tar, an unsafe member (nothing is written), or the folder cannot be written.
    """
    target = tar.with_suffix("")
    temp = tar.parent / f".{target.name}.unpacking"
    try:
        with tarfile.open(tar) as archive:
            members = archive.getmembers()
            for member in members:
                problem = _unsafe(member)
                if problem:
                    raise InputError(f"{tar}: member {member.name!r} {problem}; refusing to unpack it (nothing "
                                     "was written): unpack it by hand if you trust it")
            shutil.rmtree(temp, ignore_errors=True)  # what an interrupted --unpack left
            temp.mkdir()
            archive.extractall(temp, members=members, filter="data")
        os.rename(temp, target)
    except tarfile.TarError as error:
        shutil.rmtree(temp, ignore_errors=True)
        raise InputError(f"{tar}: not a readable tar archive ({error}); download it again") from None
    except OSError as error:
        shutil.rmtree(temp, ignore_errors=True)
        raise InputError(f"{tar}: cannot unpack it beside itself ({error.strerror or error}); free some space "
                         "or make the folder writable") from None
