"""The paper's ablations: each variant's `model.train` switch and the difference the paper claims for it.

A claimed difference is the variant's error minus the paper's net's, in percentage points (top-1, top-5):
how much worse the net got without the feature. The switches themselves are model/variants.py's.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import InputError

BASELINE = "baseline"


@dataclass(frozen=True)
class Claim:
    """What the paper says a change costs: points of top-1 / top-5 error (None: no number), and its words.

    `at_least`: the number is a lower bound ("over 1 %").
    """

    top1: float | None
    top5: float | None
    words: str
    at_least: bool = False


@dataclass(frozen=True)
class Variant:
    name: str
    flags: tuple[str, ...]  # added to the baseline's model.train command
    section: str
    what: str
    claim: Claim | None


VARIANTS = (
    Variant("one-gpu", ("--towers", "1"), "§3.2",
            "the one-GPU net: half the kernels in conv1-conv4",
            Claim(1.7, 1.2, "the two-GPU net's error is 1.7 / 1.2 % lower than the one-GPU net's")),
    Variant("no-lrn", ("--no-lrn",), "§3.3", "no local response normalisation",
            Claim(1.4, 1.2, "response normalization reduces top-1 and top-5 error by 1.4 % and 1.2 %")),
    Variant("plain-pool", ("--pool", "plain"), "§3.4", "2x2 stride-2 pooling instead of 3x3 stride 2",
            Claim(0.4, 0.3, "overlapping pooling reduces top-1 and top-5 error by 0.4 % and 0.3 %")),
    Variant("no-dropout", ("--no-dropout",), "§4.2", "no dropout in fc6, fc7",
            Claim(None, None, "without dropout, the network exhibits substantial overfitting")),
    Variant("no-lighting", ("--lighting-std", "0"), "§4.1", "no PCA lighting",
            Claim(1.0, None, "the scheme reduces the top-1 error rate by over 1 %", at_least=True)),
)
BY_NAME = {variant.name: variant for variant in VARIANTS}
BASELINE_VARIANT = Variant(BASELINE, (), "", "the paper's net and training", None)

# §6 on ILSVRC-2010 test: 39.0 / 18.3 % with the centre crop, 37.5 / 17.0 % averaging the ten views.
TEN_CROP_CLAIM = Claim(-1.5, -1.3, "ten views instead of the centre: 39.0 / 18.3 -> 37.5 / 17.0 % (ILSVRC-2010 test)")


def parse_variants(text: str) -> tuple[Variant, ...]:
    """`--variants one-gpu,no-lrn` -> those variants, in the order given (the baseline is always trained first).

    Raises:
        InputError: an unknown or repeated name, or none.
    """
    names = [name.strip() for name in text.split(",") if name.strip()]
    known = ", ".join(BY_NAME)
    if not names:
        raise InputError(f"--variants {text!r}: name at least one of {known}")
    for name in names:
        if name == BASELINE:
            raise InputError(f"--variants: the {BASELINE} is always trained; name only the variants ({known})")
        if name not in BY_NAME:
            raise InputError(f"--variants: unknown variant {name!r}; the variants are {known}")
        if names.count(name) > 1:
            raise InputError(f"--variants: {name} is named twice")
    return tuple(BY_NAME[name] for name in names)
