"""The layout docs/design.md draws: each top-level tools/*.py is one `imagenet-tools` command, its machinery
lives in sub-packages that shadow no command, and imports run one way (tools -> model -> pipeline)."""
from __future__ import annotations

import ast
from pathlib import Path

import click

from tools.cli import COMMANDS

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports (at any depth of the file: function-level imports count)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_each_top_level_module_is_one_registered_command() -> None:
    commands = {name for name in (p.stem for p in TOOLS.glob("*.py")) if name not in ("__init__", "cli")}
    assert commands == {module.removeprefix("tools.") for module, _ in COMMANDS.values()}
    for stem in commands:
        module = __import__(f"tools.{stem}", fromlist=["main"])
        assert isinstance(module.main, click.Command), stem
        # Click only: every public function or class of the file is a command (visualize's are subcommands).
        defined = [node.name for node in ast.parse((TOOLS / f"{stem}.py").read_text()).body
                   if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_")]
        assert all(isinstance(getattr(module, name), click.Command) for name in defined), (stem, defined)


def test_no_package_shadows_a_command() -> None:
    packages = {p.name for p in TOOLS.iterdir() if (p / "__init__.py").is_file()}
    assert packages and not packages & {p.stem for p in TOOLS.glob("*.py")}


def test_imports_run_one_way() -> None:
    for layer, forbidden in (("pipeline", ("model", "tools")), ("model", ("tools",))):
        for path in sorted((REPO / layer).glob("*.py")):
            upward = {m for m in imported_modules(path) if m.split(".")[0] in forbidden}
            assert not upward, (path.name, upward)
    for path in sorted(TOOLS.glob("*/*.py")):
        room = path.parent.name
        rooms = {m.split(".")[1] for m in imported_modules(path) if m.startswith("tools.")}
        # A room imports itself and tools/shared only (shared imports itself only); never a command module.
        assert rooms <= {room, "shared"} and (room != "shared" or rooms <= {"shared"}), (path, rooms)


def test_importing_the_tools_changes_no_global_setting() -> None:
    """No import-time side effects: PIL's pixel limit and matplotlib's backend are set where they are needed."""
    import os
    import subprocess
    import sys

    code = """
import importlib, pkgutil
import matplotlib, PIL.Image
import tools
limit, backend = PIL.Image.MAX_IMAGE_PIXELS, matplotlib.rcParams["backend"]
for module in pkgutil.walk_packages(tools.__path__, "tools."):
    importlib.import_module(module.name)
assert PIL.Image.MAX_IMAGE_PIXELS == limit, PIL.Image.MAX_IMAGE_PIXELS
assert matplotlib.rcParams["backend"] == backend, matplotlib.rcParams["backend"]
"""
    env = {**os.environ, "MPLBACKEND": "svg"}  # not Agg, so that a matplotlib.use("Agg") at import shows
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]


def marks(node: ast.FunctionDef) -> set[str]:
    """The pytest.mark names a test function is decorated with (`@pytest.mark.gpu`, `@pytest.mark.timeout(60)`)."""
    names = set()
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute) and target.value.attr == "mark":
            names.add(target.attr)
    return names


def test_every_gpu_test_has_a_time_limit_and_the_compile_test_runs_last() -> None:
    """issue 21: a GPU session's `pytest -m gpu` must not lose its log to one hung test, nor to the compile."""
    gpu_tests = {}
    for path in (REPO / "tests").glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and "gpu" in marks(node):
                gpu_tests[f"{path.name}::{node.name}"] = marks(node)
    assert len(gpu_tests) >= 6
    assert [name for name, found in gpu_tests.items() if "timeout" not in found] == []

    from tests import conftest

    class Item:
        def __init__(self, file: str, name: str) -> None:
            self.path, self.originalname = Path(file), name

    items = [Item("test_tools_bench.py", "test_gpu_all_modes_bf16_channels_last"), Item("test_model_ddp.py", "a"),
             Item("test_tools_pca.py", "b")]
    conftest.pytest_collection_modifyitems(None, items)
    assert [item.originalname for item in items] == ["a", "b", "test_gpu_all_modes_bf16_channels_last"]
