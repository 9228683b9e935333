"""tools/shared/figures.py: a figure is written whole (through a temporary file), in the format its name
says, and a name without an extension gets ".png" as matplotlib gives it."""
from __future__ import annotations

from PIL import Image

from tools.shared.figures import pyplot, save_figure


def draw():
    figure, axes = pyplot().subplots(figsize=(2, 1.5))
    axes.plot([0, 1], [1, 0])
    return figure


def test_png_and_a_name_without_extension(tmp_path):
    assert save_figure(draw(), tmp_path / "a.png", dpi=50) == tmp_path / "a.png"
    assert save_figure(draw(), tmp_path / "curves", dpi=50) == tmp_path / "curves.png"
    for name in ("a.png", "curves.png"):
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG" and image.size == (100, 75)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "curves.png"]  # no temporary file left


def test_the_format_follows_the_extension(tmp_path):
    path = save_figure(draw(), tmp_path / "chart.PDF", dpi=50)
    assert path.read_bytes().startswith(b"%PDF")
