"""pipeline/splits.py: shards and epoch lengths, by hand; and the module graph it untangles (no loader cycle)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.splits import batches_per_epoch, images_per_epoch, shard_bounds
from tests.test_tools_layout import imported_modules

PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"


def test_shards_cover_the_list_once_in_order() -> None:
    # 10 images over 3 shards, as DALI's readers cut them: [10*i//3, 10*(i+1)//3).
    assert [shard_bounds(10, i, 3) for i in range(3)] == [(0, 3), (3, 6), (6, 10)]
    assert shard_bounds(7, 0, 1) == (0, 7)


@pytest.mark.parametrize("images, batch, split, last, batches, served", [
    (10, 4, "train", "drop", 2, 8),    # the incomplete last batch is dropped
    (10, 4, "train", "fill", 3, 12),   # ... or filled up from the next epoch
    (10, 4, "val", "drop", 3, 10),     # validation keeps a partial last batch, every image once
    (10, 4, "ten_crop", "fill", 3, 10),
    (3, 4, "train", "drop", 0, 0),
])
def test_epoch_lengths(images, batch, split, last, batches, served) -> None:
    assert batches_per_epoch(images, batch, split, last) == batches
    assert images_per_epoch(images, batch, split, last) == served


def test_the_loaders_do_not_import_each_other() -> None:
    """The PIL baseline needs neither the DALI graphs nor the factory; DaliLoader does not need the factory."""
    pil = imported_modules(PIPELINE / "pil_loader.py")
    assert not pil & {"pipeline.graphs", "pipeline.loader", "pipeline.dali_loader"}
    assert "pipeline.loader" not in imported_modules(PIPELINE / "dali_loader.py")
