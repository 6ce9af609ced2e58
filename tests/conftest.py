"""Shared fixtures: small synthetic images and a few real photos with their masks."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import peterpan_format  # noqa: F401  (registers the plugin)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "segmentation"
PHOTO_IDS = ["ccp_0741", "hsd-232", "cat_group0421_jpeg", "camvid_0016E5_05460"]


def photo(photo_id: str) -> tuple[Image.Image, np.ndarray]:
    """A shared photo (RGB) and its subject mask (bool), or skip if the data is absent."""
    image_path = SHARED_DATA / "images" / f"{photo_id}.jpg"
    if not image_path.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    with Image.open(image_path) as im:
        image = im.convert("RGB")
    with Image.open(SHARED_DATA / "masks" / f"{photo_id}.png") as m:
        mask = np.asarray(m) > 0
    return image, mask


def synthetic(mode: str, size=(61, 47), seed=0) -> tuple[Image.Image, np.ndarray]:
    """A smooth image with noise (so every coding has work to do) and an elliptical mask."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    base = np.stack([(x * (3 + c) + y * (5 - c)) % 256 for c in range(channels)], axis=2)
    pixels = np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)
    mask = ((x - w * 0.45) / (w * 0.3)) ** 2 + ((y - h * 0.5) / (h * 0.35)) ** 2 <= 1
    return Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode), mask


def encode(image: Image.Image, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PPAN", **params)
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.copy()


def as_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image).reshape(image.height, image.width, -1)


def run_boundschecked(script: str, cache_dir: Path) -> None:
    """Run ``script`` in a subprocess with Numba's bounds checking on (kernels compiled
    afresh into ``cache_dir``); it must exit cleanly and print "ok"."""
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(cache_dir))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok"
