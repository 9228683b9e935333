"""One rule for every decoder (pipeline/pil_image.py): EXIF orientation honoured and every PIL mode made 8-bit RGB
as DALI's CPU decoder does, on every PIL path (predict, the PIL baseline, compute-pca's PIL backend, visualize)
and in prepare's resized and repaired copies.

References: the upright picture is drawn in NumPy; each stored (oriented) file is made from it by NumPy flips
and rotations chosen here (EXIF 2.3's table), not by PIL's exif_transpose; and DALI's own CPU decode of the
same files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.filelist import read_file_list
from pipeline.pil_image import rgb8, stored_image, stored_pixels, upright_rgb
from tests.test_pipeline_graphs import pil_stored
from tests.test_tools_prepare_check import run_prepare

WIDTH, HEIGHT = 64, 40
# Stored pixels of orientation N from the upright picture A: the inverse of what a viewer does for N.
# 2 mirror, 3 turn 180, 4 flip, 5 transpose, 6 shown turned 90 clockwise (so stored turned 90 anticlockwise),
# 7 transverse, 8 shown turned 90 anticlockwise.
STORED = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
          5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, 1), 7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
          8: lambda a: np.rot90(a, -1)}


def upright() -> np.ndarray:
    """An asymmetric smooth picture: red grows to the right, green downwards; no two orientations agree."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    return np.stack([xx * 255 // (WIDTH - 1), yy * 255 // (HEIGHT - 1), np.full_like(xx, 90)], -1).astype(np.uint8)


def write_oriented(folder: Path, mode: str = "RGB") -> dict[int, Path]:
    """`o<N>.JPEG` for N = 1..8: the stored pixels of orientation N with EXIF orientation tag N."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for tag, store in STORED.items():
        exif = Image.Exif()
        exif[0x0112] = tag
        paths[tag] = folder / f"o{tag}.JPEG"
        Image.fromarray(np.ascontiguousarray(store(upright()))).convert(mode).save(paths[tag], "JPEG", quality=95,
                                                                                    exif=exif)
    return paths


def dali_decode(paths: list[Path]) -> list[np.ndarray]:
    """DALI's CPU decoder (device "cpu", no GPU) on the files, RGB."""
    dali = pytest.importorskip("nvidia.dali", reason="DALI is not installed")
    from nvidia.dali import fn, types

    @dali.pipeline_def(batch_size=len(paths), num_threads=1, device_id=None)
    def decode():
        jpegs, _ = fn.readers.file(files=[str(path) for path in paths])
        return fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)

    pipe = decode()
    pipe.build()
    (batch,) = pipe.run()
    return [np.asarray(batch[i]) for i in range(len(paths))]


def close(actual: np.ndarray, expected: np.ndarray, tolerance: float = 3.0) -> bool:
    return actual.shape == expected.shape and np.abs(actual.astype(np.float32) - expected).mean() < tolerance


def test_every_pil_path_and_dali_see_the_upright_picture(tmp_path: Path) -> None:
    paths = write_oriented(tmp_path / "o")
    reference = tmp_path / "upright.png"
    Image.fromarray(upright()).save(reference)
    stored_reference = pil_stored(reference).astype(np.float32)
    for tag, path, decoded in zip(STORED, paths.values(), dali_decode(list(paths.values()))):
        assert close(decoded, upright()), f"DALI, orientation {tag}"
        with Image.open(path) as image:
            assert close(np.asarray(upright_rgb(image)), upright()), f"upright_rgb, orientation {tag}"
        with Image.open(path) as image:  # compute-pca --backend pil
            assert close(stored_pixels(image), stored_reference), f"stored_pixels, orientation {tag}"
        # model.predict, the --no-dali baseline and visualize read through stored_image
        assert close(stored_image(path), stored_reference), f"stored_image, orientation {tag}"


def test_prepare_copies_are_upright_once_and_carry_no_orientation(tmp_path: Path) -> None:
    """Resized copies (RGB originals) and repaired copies (CMYK originals): rotated once, no tag left."""
    root = tmp_path / "root"
    rgb = write_oriented(root / "train" / "n01")
    cmyk = write_oriented(root / "train" / "n02", mode="CMYK")
    dali = dict(zip([*rgb.values(), *cmyk.values()], dali_decode([*rgb.values(), *cmyk.values()])))
    resized = tmp_path / "r"
    assert run_prepare(root, "--out", tmp_path / "o256", "--resized-root", resized).exit_code == 0
    big = np.asarray(Image.fromarray(upright()).resize((410, 256), Image.Resampling.LANCZOS))
    for path in rgb.values():
        with Image.open(resized / path.relative_to(root)) as copy:
            assert 0x0112 not in copy.getexif()
            assert close(np.asarray(copy), big), path.name
        assert close(dali[path], upright()), path.name
    assert run_prepare(root, "--out", tmp_path / "out").exit_code == 0
    repaired = {Path(rel).name: root / rel for rel, _ in read_file_list(tmp_path / "out" / "train.txt")
                if rel.startswith("..")}
    assert len(repaired) == 8  # the CMYK ones
    for path in cmyk.values():
        with Image.open(repaired[path.name]) as copy:
            assert 0x0112 not in copy.getexif()
            pixels = np.asarray(copy)
        assert close(pixels, upright(), 4.0), path.name
        assert close(pixels, dali[path].astype(np.float32), 4.0), path.name


def grey_ramp16() -> np.ndarray:
    return (np.arange(HEIGHT * WIDTH).reshape(HEIGHT, WIDTH) * 65535 // (HEIGHT * WIDTH - 1)).astype(np.uint16)


def mode_cases(folder: Path) -> dict[str, tuple[Path, np.ndarray]]:
    """A file in each PIL mode, named .JPEG as in a real tree, and its 8-bit RGB pixels worked out by hand."""
    folder.mkdir(parents=True, exist_ok=True)
    ramp = grey_ramp16()
    grey8 = np.rint(ramp / 257).astype(np.uint8)
    colour = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    colour[..., 0], colour[..., 1] = 200, np.arange(WIDTH, dtype=np.uint8)[None, :] * 3
    alpha = np.where(np.arange(WIDTH) < WIDTH // 2, 0, 255).astype(np.uint8)[None, :].repeat(HEIGHT, 0)
    index = (np.arange(WIDTH)[None, :] // 16).repeat(HEIGHT, 0).astype(np.uint8)
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    cases = {
        "I;16": (Image.fromarray(ramp), "PNG", grey8),
        "I": (Image.fromarray(ramp.astype(np.int32), "I"), "TIFF", grey8),
        "F": (Image.fromarray(ramp.astype(np.float32) / 65535, "F"), "TIFF", grey8),
        "L": (Image.fromarray(grey8, "L"), "PNG", grey8),
        "1": (Image.fromarray(np.arange(WIDTH)[None, :].repeat(HEIGHT, 0) % 2 == 1), "PNG",
              (np.arange(WIDTH)[None, :].repeat(HEIGHT, 0) % 2 * 255).astype(np.uint8)),
        "LA": (Image.fromarray(np.stack([grey8, alpha], -1), "LA"), "PNG", grey8),
        "RGBA": (Image.fromarray(np.concatenate([colour, alpha[..., None]], -1), "RGBA"), "PNG", colour),
        "CMYK": (Image.fromarray(colour).convert("CMYK"), "JPEG", colour),
    }
    p_image = Image.fromarray(index, "P")
    p_image.putpalette(palette.ravel().tolist())
    cases["P"] = (p_image, "PNG", palette[index])
    cases["P transparent"] = (p_image, "PNG", palette[index])  # index 3 transparent: DALI shows its colour
    written = {}
    for name, (image, fmt, pixels) in cases.items():
        path = folder / f"{name.replace(' ', '_').replace(';', '')}.JPEG"
        image.save(path, fmt, **({"transparency": 3} if name == "P transparent" else {}))
        rgb = pixels if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, -1)
        written[name] = (path, rgb.astype(np.float32))
    return written


def test_every_mode_becomes_8_bit_rgb_as_dali_decodes_it(tmp_path: Path) -> None:
    cases = mode_cases(tmp_path / "modes")
    with Image.open(cases["I;16"][0]) as image:
        assert image.mode == "I;16"  # the 16-bit case is really 16-bit
    for name, (path, expected) in cases.items():
        with Image.open(path) as image:
            mode = image.mode
            pixels = np.asarray(rgb8(image))
        assert mode == name.split()[0], name
        assert pixels.dtype == np.uint8 and close(pixels, expected, 1.5 if mode != "CMYK" else 3.0), name
    decodable = [name for name in cases if name not in ("I",)]  # DALI fails on a 32-bit integer TIFF
    for name, decoded in zip(decodable, dali_decode([cases[name][0] for name in decodable])):
        assert close(decoded, cases[name][1], 1.5 if name != "CMYK" else 3.0), f"DALI, {name}"


def test_repaired_16_bit_png_keeps_its_grey_levels(tmp_path: Path) -> None:
    """The issue's case: a 16-bit greyscale PNG named .JPEG was repaired into an almost white JPEG (mean 254)."""
    root = tmp_path / "root"
    (root / "train" / "n01").mkdir(parents=True)
    source = root / "train" / "n01" / "deep.JPEG"
    Image.fromarray(grey_ramp16()).save(source, "PNG")
    assert run_prepare(root, "--out", tmp_path / "out").exit_code == 0
    (rel, _), = read_file_list(tmp_path / "out" / "train.txt")
    with Image.open(root / rel) as copy:
        repaired = np.asarray(copy, np.float32)
    (decoded,) = dali_decode([source])
    assert abs(repaired.mean() - decoded.mean()) < 3 and abs(decoded.mean() - 127.5) < 1
    assert np.abs(repaired - decoded).mean() < 3
