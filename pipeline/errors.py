"""Errors a user can cause, and how command-line tools report them: one line, non-zero exit."""
from __future__ import annotations

import functools
from typing import Callable, TypeVar

import click

F = TypeVar("F", bound=Callable)


class InputError(Exception):
    """A problem the user can fix (bad path, bad list line, corrupt image, wrong pca.json).

    `str(error)` is the whole message: what is wrong, which file or line, what to do.
    """


class ReaderStateRefused(Exception):
    """DALI could not restore a training pipeline from a checkpoint's reader state (another DALI version or
    graph); the caller falls back to reading the trained batches again. `str(error)`: DALI's first line."""


def user_errors(func: F) -> F:
    """Decorate a click command so that an InputError ends in one line and exit code 1, no traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except InputError as error:
            raise click.ClickException(str(error)) from None

    return wrapper  # type: ignore[return-value]
