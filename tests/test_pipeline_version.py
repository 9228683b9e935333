"""The toolkit's version (pipeline/version.py), and every command from a plain checkout without package
metadata (issue 21 part 1: compute-pca asked importlib.metadata and died before writing pca.json)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path


from pipeline import version
from tests.conftest import write_image_tree, write_lists

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 300

# Makes this interpreter behave as if alexnet-dali were not installed: what a checkout run from PYTHONPATH
# sees on a machine where nobody ran pip install (importlib.metadata's own lookup, not the toolkit's).
NO_METADATA = '''
import importlib.metadata as metadata

_distribution = metadata.distribution

def distribution(name):
    if name.replace("_", "-").lower() == "alexnet-dali":
        raise metadata.PackageNotFoundError(name)
    return _distribution(name)

def version(name):
    return distribution(name).version

metadata.distribution, metadata.version = distribution, version
'''


def test_version_from_the_checkouts_pyproject_without_metadata(monkeypatch):
    def missing(name):
        raise version.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(version.importlib.metadata, "version", missing)
    expected = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.MULTILINE).group(1)
    assert version.toolkit_version() == f"{expected} (source tree)"
    monkeypatch.setattr(version, "PYPROJECT", REPO / "no-such-pyproject.toml")
    assert version.toolkit_version() == "unknown (source tree)"


def run_from_checkout(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    site = tmp_path / "no_metadata"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(NO_METADATA)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(site)]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=TIMEOUT)


def test_compute_pca_and_train_run_from_a_plain_checkout(tmp_path):
    root = tmp_path / "tree"
    lists = write_lists(root, write_image_tree(root, {"train": 2, "val": 1}, seed=2), tmp_path / "lists")
    probe = run_from_checkout(tmp_path, "-c", "import importlib.metadata as m; m.version('alexnet-dali')")
    assert "PackageNotFoundError" in probe.stderr  # the lookup fails in these processes, as on a bare checkout

    pca = tmp_path / "pca.json"
    done = run_from_checkout(tmp_path, "-m", "tools.cli", "compute-pca", "--list", str(lists / "train.txt"),
                             "--root", str(root), "--out", str(pca), "--workers", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    written = json.loads(pca.read_text())
    assert written["n_images"] == 6 and written["version"].endswith("(source tree)")

    done = run_from_checkout(tmp_path, "-m", "model.train", "--root", str(root), "--lists", str(lists), "--pca",
                             str(pca), "--out", str(tmp_path / "run"), "--epochs", "1", "-b", "2", "--max-steps", "1",
                             "--workers", "1", "--device", "cpu", "--lr", "0.001")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "run" / "checkpoint.pth.tar").is_file()
