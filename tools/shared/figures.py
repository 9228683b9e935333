"""What every picture of the toolkit does first and last: matplotlib drawing into files, then the PNG written
(making its folder) and the figure freed."""
from __future__ import annotations

from pathlib import Path

from pipeline.atomic import replacing


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only: no display on a training machine).

    Chosen when a picture is drawn, not when a module is imported, so importing a tool changes nothing.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: Path | str, dpi: int) -> Path:
    """Write a matplotlib figure to `path` (PNG), creating the folder; the figure is closed afterwards.

    Args:
        figure: a matplotlib Figure.
        path: the PNG to write.
        dpi: resolution.

    Returns:
        `path` as a Path.
    """
    plt = pyplot()
    path = Path(path)
    figure.tight_layout()
    if not path.suffix:  # as matplotlib does for a name without an extension
        path = path.with_name(path.name + ".png")
    try:
        with replacing(path) as temp:  # a reader never sees half a PNG
            figure.savefig(temp, dpi=dpi, format=path.suffix[1:].lower())
    finally:
        plt.close(figure)
    return path
