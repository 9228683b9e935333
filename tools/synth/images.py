"""Procedural images for the demo set and the benchmark set, drawn with NumPy (no downloads).

Two kinds of picture share the same texture code:
- `demo_image`: one of ten classes, each a shape filled with its own pattern (a striped disc, a checkered
  square, ...), with random colours, size, position and rotation, on a textured background. A class is
  never one flat colour: the network has to find the shape and the pattern.
- `photo_like_image`: no class, only content whose JPEG weighs about what a real photo does (fractal
  noise with a 1/f-like spectrum, soft blobs, edges), for throughput benchmarks.

Every image comes from its own `np.random.Generator`, seeded from (seed, split, class, index) by the
callers, so a set is the same bytes whatever the number of worker processes.
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

# (shape, fill pattern) of each demo class; the folder id is "s<index>_<shape>_<pattern>".
DEMO_CLASSES = (
    ("disc", "hstripes"),
    ("square", "checker"),
    ("triangle", "dots"),
    ("ring", "solid"),
    ("cross", "vstripes"),
    ("star", "solid"),
    ("diamond", "rings"),
    ("hexagon", "grid"),
    ("crescent", "diagonal"),
    ("bar", "noise"),
)


# Object radius as a share of the image's shorter side, and how far the background's two colours lie
# apart (1 = as far as the bench images'): big objects on a quiet background make the classes learnable
# within the demo's few thousand training steps (docs/demo.md).
DEMO_RADIUS = (0.32, 0.47)
DEMO_BACKGROUND_CONTRAST = 0.35
# Spread of a class's typical hue (in turns; neighbouring classes lie 0.1 apart).
DEMO_HUE_JITTER = 0.025
# Pattern period relative to the object (times a random 0.18-0.28 x radius): the classes differ in scale too.
PATTERN_SCALE = {"hstripes": 1.0, "checker": 0.6, "dots": 1.0, "vstripes": 1.5, "rings": 0.8, "grid": 1.3,
                 "diagonal": 0.7, "noise": 1.0, "solid": 1.0}


# Beyond ten classes (up to MAX_CLASSES, ImageNet's 1000 and more): a class is a (shape, pattern, hue) triple,
# every shape with every pattern (10 x 9 = 90 pairs) in each of HUE_BINS hues. Neighbouring indices differ in
# shape, pattern and hue alike, so the first N classes of any N are as varied as the set allows (classes 0-10
# are 10 shapes, 9 patterns and 11 hues); its folder is "s<index, 4 digits>_<shape>_<pattern>_h<hue bin>", so
# that sorted order stays label order. These are not the demo's ten classes: 10 or fewer gives those.
SHAPES = tuple(dict.fromkeys(shape for shape, _ in DEMO_CLASSES))
PATTERNS = tuple(PATTERN_SCALE)
HUE_BINS = 12
MAX_CLASSES = len(SHAPES) * len(PATTERNS) * HUE_BINS


def class_spec(class_index: int, classes: int) -> tuple[str, str, float]:
    """(shape, pattern, typical hue in turns) of class `class_index` of a `classes`-class set: the ten demo
    classes (hue index / 10) for up to ten; else pair j = index % 90 (shape j % 10, pattern (j + j // 10)
    % 9: the 90 pairs once each) in hue bin (index // 90 + index) % 12 (unique: 91 k is no multiple of 12)."""
    if classes <= len(DEMO_CLASSES):
        return (*DEMO_CLASSES[class_index], class_index / len(DEMO_CLASSES))
    pairs = len(SHAPES) * len(PATTERNS)
    j = class_index % pairs
    shape = SHAPES[j % len(SHAPES)]
    pattern = PATTERNS[(j + j // len(SHAPES)) % len(PATTERNS)]
    return shape, pattern, ((class_index // pairs + class_index) % HUE_BINS) / HUE_BINS


def class_ids(classes: int = len(DEMO_CLASSES)) -> list[str]:
    """Folder names of a `classes`-class set, in label order (sorted order equals label order)."""
    if classes <= len(DEMO_CLASSES):
        return [f"s{index}_{shape}_{pattern}" for index, (shape, pattern) in enumerate(DEMO_CLASSES)][:classes]
    specs = [class_spec(index, classes) for index in range(classes)]
    return [f"s{index:04d}_{shape}_{pattern}_h{round(hue * HUE_BINS)}" for index, (shape, pattern, hue) in enumerate(specs)]


def fractal_noise(rng: np.random.Generator, height: int, width: int, octaves: int = 6,
                  persistence: float = 0.55) -> np.ndarray:
    """Sum of upsampled random grids (value noise): smooth at large scale, detailed at small scale.

    Args:
        rng: the image's generator.
        height, width: output size.
        octaves: number of scales; octave k has a 2**(k+2)-cell grid across the image.
        persistence: amplitude ratio between successive octaves (lower = smoother).

    Returns:
        (height, width) float32, roughly zero-mean with unit-order amplitude.
    """
    total = np.zeros((height, width), np.float32)
    amplitude = 1.0
    for octave in range(octaves):
        cells = 2 ** (octave + 2)
        grid = rng.standard_normal((max(2, cells * height // width), cells)).astype(np.float32)
        # PIL's bilinear resize of a float image is the fastest smooth upsampling at hand.
        layer = np.asarray(Image.fromarray(grid, "F").resize((width, height), Image.BILINEAR))
        total += amplitude * layer
        amplitude *= persistence
    return total


def textured_background(rng: np.random.Generator, height: int, width: int, contrast: float = 1.0) -> np.ndarray:
    """Two random colours mixed by fractal noise, plus a gradient and grain: (h, w, 3) float32 in 0-255.

    `contrast` < 1 pulls the second colour towards the first (a quieter background).
    """
    colour_a, colour_b = rng.uniform(20, 235, size=(2, 3)).astype(np.float32)
    colour_b = colour_a + contrast * (colour_b - colour_a)
    mix = fractal_noise(rng, height, width, octaves=5, persistence=rng.uniform(0.4, 0.7))
    mix = 1.0 / (1.0 + np.exp(-1.5 * mix))
    image = colour_a + (colour_b - colour_a) * mix[..., None]
    slope = rng.uniform(-40, 40, size=2)
    yy = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    image += (slope[0] * yy + slope[1] * xx)[..., None]
    image += rng.normal(0, 6, size=(height, width, 1)).astype(np.float32)
    return image


def _polygon_mask(u: np.ndarray, v: np.ndarray, sides: int, radius: float) -> np.ndarray:
    """Inside a regular polygon of circumradius `radius` centred at the origin (coordinates u, v)."""
    angle = np.arctan2(v, u)
    sector = 2 * np.pi / sides
    # Distance to the edge along the ray: apothem / cos(angle to the nearest edge normal).
    local = np.mod(angle, sector) - sector / 2
    return np.hypot(u, v) * np.cos(local) <= radius * np.cos(np.pi / sides)


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray, radius: float) -> np.ndarray:
    """Boolean mask of `shape` in object coordinates (u, v): centred, rotated, size `radius`."""
    r = np.hypot(u, v)
    if shape == "disc":
        return r <= radius
    if shape == "ring":
        return (r <= radius) & (r >= 0.55 * radius)
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8 * radius
    if shape == "diamond":
        return np.abs(u) + np.abs(v) * 1.6 <= radius
    if shape == "triangle":
        return _polygon_mask(u, v, 3, radius)
    if shape == "hexagon":
        return _polygon_mask(u, v, 6, radius)
    if shape == "cross":
        arm = 0.3 * radius
        return ((np.abs(u) <= arm) & (np.abs(v) <= radius)) | ((np.abs(v) <= arm) & (np.abs(u) <= radius))
    if shape == "star":
        angle = np.arctan2(v, u)
        return r <= radius * (0.45 + 0.55 * np.abs(np.cos(2.5 * angle)) ** 2)
    if shape == "crescent":
        return (r <= radius) & (np.hypot(u - 0.45 * radius, v) > 0.8 * radius)
    if shape == "bar":
        return (np.abs(u) <= radius) & (np.abs(v) <= 0.35 * radius)
    raise ValueError(f"unknown shape {shape!r}")


def fill_pattern(pattern: str, rng: np.random.Generator, u: np.ndarray, v: np.ndarray,
                 radius: float) -> np.ndarray:
    """Pattern in [0, 1] over object coordinates; the period scales with the object (random jitter)."""
    period = radius * rng.uniform(0.18, 0.28) * PATTERN_SCALE[pattern]
    if pattern == "solid":
        return np.full(u.shape, 0.85, np.float32) + 0.15 * (v / radius)
    if pattern == "hstripes":
        return (np.sin(2 * np.pi * v / period) > 0).astype(np.float32)
    if pattern == "vstripes":
        return (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)
    if pattern == "diagonal":
        return (np.sin(2 * np.pi * (u + v) / (1.4 * period)) > 0).astype(np.float32)
    if pattern == "checker":
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    if pattern == "grid":
        return ((np.abs(np.mod(u, period) - period / 2) < period * 0.15)
                | (np.abs(np.mod(v, period) - period / 2) < period * 0.15)).astype(np.float32)
    if pattern == "dots":
        du, dv = np.mod(u, period) - period / 2, np.mod(v, period) - period / 2
        return (np.hypot(du, dv) < period * 0.3).astype(np.float32)
    if pattern == "rings":
        return (np.sin(2 * np.pi * np.hypot(u, v) / period) > 0).astype(np.float32)
    if pattern == "noise":
        noise = fractal_noise(rng, u.shape[0], u.shape[1], octaves=7, persistence=0.8)
        return (noise > 0).astype(np.float32)
    raise ValueError(f"unknown pattern {pattern!r}")


def class_colour(rng: np.random.Generator, typical_hue: float) -> np.ndarray:
    """The pattern's main colour: a hue typical of the class (`typical_hue` turns of the colour wheel: class_spec,
    jittered by N(0, DEMO_HUE_JITTER)), random saturation and brightness. Neighbouring classes' hues
    overlap, grayscale images lose the cue entirely, and the other colour of the pattern is random: colour
    helps the short demo training get going, shape and pattern are needed to finish it."""
    hue = (typical_hue + rng.normal(0, DEMO_HUE_JITTER)) % 1.0
    saturation, value = rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0)
    rgb = Image.new("HSV", (1, 1), (int(hue * 255), int(saturation * 255), int(value * 255))).convert("RGB")
    return np.array(rgb.getpixel((0, 0)), dtype=np.float32)


def demo_image(rng: np.random.Generator, class_index: int, grayscale: bool = False,
               classes: int = len(DEMO_CLASSES)) -> Image.Image:
    """One demo image of class `class_index`: its shape, pattern and hue, random everything else.

    Args:
        rng: the image's own generator (deterministic output for a given state).
        class_index: the class (class_spec) of a set of `classes` classes.
        grayscale: return an "L" image (ImageNet has some; the pipeline must convert them).

    Returns:
        A PIL image, 300-700 px on each side.
    """
    shape, pattern, hue = class_spec(class_index, classes)
    width, height = (int(x) for x in rng.integers(300, 701, size=2))
    image = textured_background(rng, height, width, DEMO_BACKGROUND_CONTRAST)
    short = min(width, height)
    radius = short * rng.uniform(*DEMO_RADIUS)
    centre_x = rng.uniform(radius * 0.8, width - radius * 0.8)
    centre_y = rng.uniform(radius * 0.8, height - radius * 0.8)
    theta = rng.uniform(0, 2 * np.pi) if shape not in ("cross", "bar") else rng.uniform(-0.4, 0.4)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    dx, dy = xx - centre_x, yy - centre_y
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    mask = shape_mask(shape, u, v, radius)
    # Pattern coordinates are not rotated with the object so stripes keep their direction (a cue).
    fill = fill_pattern(pattern, rng, dx, dy, radius)
    fore = class_colour(rng, hue)
    back = rng.uniform(0, 255, size=3).astype(np.float32)
    # Keep the two pattern colours apart so the pattern stays visible after JPEG and lighting.
    while np.abs(fore - back).sum() < 180:
        back = rng.uniform(0, 255, size=3).astype(np.float32)
    colour = back + (fore - back) * fill[..., None]
    shading = 1.0 + 0.15 * (u / radius)[..., None]
    image = np.where(mask[..., None], colour * shading, image)
    image += rng.normal(0, 4, size=image.shape).astype(np.float32)
    pil = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")
    return pil.convert("L") if grayscale else pil


def photo_like_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Content with a photo's JPEG weight: colour fractal noise, a few soft shapes and grain.

    Args:
        rng: the image's own generator.
        width, height: output size.

    Returns:
        An RGB PIL image; saved at quality 90 at 500x375 it weighs ~100 KB, like an ImageNet photo.
    """
    image = textured_background(rng, height, width)
    # Per-channel detail with a slowly falling spectrum gives the high-frequency energy of real photos.
    detail = np.stack([fractal_noise(rng, height, width, octaves=8, persistence=0.8) for _ in range(3)], -1)
    image += detail * rng.uniform(14, 24)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for _ in range(int(rng.integers(2, 6))):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.1, 0.3) * min(width, height)
        inside = np.hypot(xx - cx, yy - cy) < r
        image = np.where(inside[..., None], image * 0.5 + rng.uniform(0, 255, 3) * 0.5, image)
    image += rng.normal(0, 12, size=image.shape).astype(np.float32)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")


def save_jpeg(image: Image.Image, path: str, quality: int) -> int:
    """Save baseline JPEG with 4:2:0 chroma (what cameras and ImageNet use). Returns the file's bytes."""
    image.save(path, "JPEG", quality=quality, subsampling="4:2:0", optimize=False)
    return os.path.getsize(path)
