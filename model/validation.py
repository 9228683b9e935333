"""A run whose lists have no validation set (prepare found no val/ images, so it wrote no val.txt).

Training goes on without validation, said once on stderr: every epoch is trained and checkpointed
(checkpoint.pth.tar), its metrics.jsonl line has null validation values, no model_best.pth.tar is written and
best_acc1 stays 0. What needs validation is refused in one line, with what to do instead:
- `-e` (nothing to evaluate on);
- `--schedule plateau` (the default: it lowers the rate when validation stops improving; `--schedule step`
  lowers it every --step-size epochs instead);
- `--ten-crop` (it scores the validation set).
"""
from __future__ import annotations

import sys
from dataclasses import replace

from model.config import RunConfig, ScheduleConfig
from pipeline.config import DataConfig
from pipeline.errors import InputError


def without_validation(data: DataConfig, schedule: ScheduleConfig, run: RunConfig, log: bool = True) -> DataConfig:
    """`data` unchanged when its val.txt exists; else `data` without a validation list, said once.

    Args:
        data, schedule, run: the run's settings (a resumed run's as taken from its checkpoint).
        log: print the note (the main process only).

    Raises:
        InputError: -e, --schedule plateau or --ten-crop without a val.txt.
    """
    if data.val_list is None or data.val_list.exists():
        return data
    lists = data.val_list.parent
    missing = f"--lists {lists} has no val.txt (prepare found no validation set)"
    if run.evaluate:
        raise InputError(f"-e: {missing}, so there is nothing to evaluate on; give the lists of a tree with "
                         "val/ images")
    if schedule.kind == "plateau":
        raise InputError(f"{missing}, and --schedule plateau lowers the rate when validation stops improving; "
                         "train without validation with --schedule step (lr/10 every --step-size epochs), "
                         "or add val/ to the tree and run prepare again")
    if run.ten_crop:
        raise InputError(f"{missing}, and --ten-crop scores the validation set; drop --ten-crop")
    if log:
        print(f"note: {missing}: training without validation (a checkpoint every epoch, no model_best.pth.tar)",
              file=sys.stderr)
    return replace(data, val_list=None)
