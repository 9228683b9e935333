"""Every file under ROOT, found in one walk: what `prepare` accounts for (each file listed, repaired, rejected or
ignored, none lost).

The walk follows links to folders (a `train/` that is a link to another disk is common) and visits each folder
once, so a link loop ends. Order: folder by folder, depth first, names sorted; within a class folder that is the
order torchvision's ImageFolder sees.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip", ".gz", ".7z")


@dataclass
class Tree:
    """The files and folders under ROOT, paths relative to ROOT with `/` separators.

    Attributes:
        files: every entry that is not a folder (a file, a link to one, a dangling link, a socket...), in walk
            order.
        special: the entries of `files` that are neither files nor links (sockets, fifos, devices): never opened.
        folders: every folder found (ROOT itself is ""), also those that could not be read.
        unreadable: (folder/, why) for folders that could not be read: rows for rejected.tsv.
        loops: (folder/, why) for links to a folder already walked (a loop): rows for ignored.tsv.
        links: the entries of `files` that are symbolic links (tools.prepare.links lists each real file once).
    """

    files: list[str] = field(default_factory=list)
    special: set[str] = field(default_factory=set)
    folders: set[str] = field(default_factory=set)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    loops: list[tuple[str, str]] = field(default_factory=list)
    links: set[str] = field(default_factory=set)

    def subfolders(self, folder: str) -> list[str]:
        """Names of the visible folders directly in `folder` (a path relative to ROOT), sorted."""
        prefix = f"{folder}/" if folder else ""
        return sorted({path[len(prefix):] for path in self.folders
                       if path.startswith(prefix) and path != folder and "/" not in path[len(prefix):]
                       and not path[len(prefix):].startswith(".")})


def is_hidden(rel: str) -> bool:
    """A file or folder whose name, or any folder above it, starts with a dot (.DS_Store, ._x.JPEG, .git/)."""
    return rel.startswith(".") or "/." in rel


def image_id(rel: str) -> str:
    """The file name without its extension, as `Path(rel).stem` (a fraction of its time: called per file)."""
    name = rel[rel.rfind("/") + 1:]
    dot = name.rfind(".")
    return name[:dot] if 0 < dot < len(name) - 1 else name


def has_image_name(rel: str) -> bool:
    return rel.lower().endswith(IMAGE_SUFFIXES)


def is_archive(rel: str) -> bool:
    return rel.lower().endswith(ARCHIVE_SUFFIXES)


def walk(root: Path) -> Tree:
    """Walk ROOT once (see the module docstring)."""
    tree, seen = Tree(), set()
    pending = [""]
    while pending:
        rel = pending.pop()
        folder = root / rel if rel else root
        try:
            info = folder.stat()
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as error:
            tree.folders.add(rel)  # it is there (a class folder keeps its label), but what it holds is unknown
            tree.unreadable.append((f"{rel}/", f"unreadable folder ({error.strerror or error})"))
            continue
        if (info.st_dev, info.st_ino) in seen:
            tree.loops.append((f"{rel}/", "a link to a folder already scanned (not scanned twice)"))
            continue
        seen.add((info.st_dev, info.st_ino))
        tree.folders.add(rel)
        below = []
        for entry in entries:
            path = f"{rel}/{entry.name}" if rel else entry.name
            if _is_dir(entry):
                below.append(path)
            else:  # a dangling link is a file that cannot be read
                tree.files.append(path)
                if entry.is_symlink():
                    tree.links.add(path)
                elif not _is_file(entry):
                    tree.special.add(path)
        pending.extend(reversed(below))  # depth first, in name order
    return tree


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False
