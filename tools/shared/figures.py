"""What every picture of the toolkit does last: lay out, write the PNG (making its folder), free the figure."""
from __future__ import annotations

from pathlib import Path


def save_figure(figure, path: Path | str, dpi: int) -> Path:
    """Write a matplotlib figure to `path` (PNG), creating the folder; the figure is closed afterwards.

    Args:
        figure: a matplotlib Figure.
        path: the PNG to write.
        dpi: resolution.

    Returns:
        `path` as a Path.
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path
