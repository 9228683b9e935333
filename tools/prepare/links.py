"""Each real file listed once: a symbolic link to an image that is already listed (the same class, another class
or the other split) would weigh that image twice, or put a training image in the validation set.

Only links cost a system call: the real path of each linked file is resolved, and a plain file is compared by
its folder's real path and its name (no stat per file). Hard links are not looked for.
"""
from __future__ import annotations

import os
from pathlib import Path

from tools.prepare.report import escape_name


def drop_linked_copies(root: Path, links: set[str], entries: dict[str, list[tuple[str, str]]],
                       ignored: list[tuple[str, str]]) -> None:
    """Keep the first of the candidate images that are the same real file, in place; the others go to `ignored`.

    The plain file is kept if it is a candidate, else the first link in scan order (splits in `entries`' order).

    Args:
        root: ROOT.
        links: paths (relative to ROOT) of the files that are symbolic links.
        entries: split -> [(path, class id)], the candidate images; changed in place.
        ignored: (path, why) rows; a duplicate is added with the path it duplicates.
    """
    linked = [rel for rows in entries.values() for rel, _ in rows if rel in links]
    if not linked:
        return
    real = {rel: os.path.realpath(root / rel) for rel in linked}
    folders = {os.path.dirname(target) for target in real.values()}
    folder_cache: dict[str, str] = {}

    def real_path(rel: str) -> str | None:
        """The real path of a candidate, or None for a plain file in a folder no link points into."""
        if rel in real:
            return real[rel]
        folder, _, name = rel.rpartition("/")
        if folder not in folder_cache:
            folder_cache[folder] = os.path.realpath(root / folder)
        return f"{folder_cache[folder]}/{name}" if folder_cache[folder] in folders else None

    owner: dict[str, str] = {}
    for rows in entries.values():  # plain files first: the real file keeps its place
        for rel, _ in rows:
            key = None if rel in real else real_path(rel)
            if key is not None:
                owner.setdefault(key, rel)
    for split, rows in entries.items():
        kept = []
        for rel, class_id in rows:
            first = owner.setdefault(real[rel], rel) if rel in real else rel
            if first == rel:
                kept.append((rel, class_id))
            else:
                ignored.append((rel, f"duplicate (a link to the same file as {escape_name(first)}, which is listed)"))
        entries[split] = kept
