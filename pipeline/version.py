"""The toolkit's version, for the files it writes (pca.json, reports), whether it is pip-installed or not.

A checkout run from its folder (`PYTHONPATH=. python -m tools.cli ...`, as on a lent GPU machine) has no
package metadata: importlib.metadata then raises PackageNotFoundError, so the version comes from the
checkout's own pyproject.toml instead, marked as a source tree.
"""
from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

DISTRIBUTION = "alexnet-dali"
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
# `version = "0.1.0"` in pyproject.toml's [project] table (a regex: tomllib is Python 3.11+).
VERSION_LINE = re.compile(r'^\[project\][^\[]*?^version\s*=\s*"([^"]+)"', re.MULTILINE | re.DOTALL)


def toolkit_version() -> str:
    """"0.1.0" when installed; "0.1.0 (source tree)" from a checkout; "unknown (source tree)" without either."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        match = VERSION_LINE.search(PYPROJECT.read_text(encoding="utf-8"))
    except OSError:
        match = None
    return f"{match.group(1) if match else 'unknown'} (source tree)"
