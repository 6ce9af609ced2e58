"""Where the subject mask comes from: a mask given by the caller, or a segmenter."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from PIL import Image

INSTALL_HINT = 'pip install "peterpan-format[segment]"'


def resolve_mask(image: Image.Image, mask: Any = None, segmenter: Any = None) -> tuple[np.ndarray, dict | None]:
    """(mask, classes): a (H, W) uint8 array, 1 for subject pixels, from ``mask`` or else from
    ``segmenter``, and {class name: subject pixels} when a segmenter that knows classes ran.

    ``mask`` is a PIL image (mode 1, L or P; non-zero = subject) or a 2-D NumPy bool/integer
    array of the image's size. Without a mask the segmenter (default: the embedded model)
    finds the subject.
    """
    classes = None
    if mask is None:
        mask, classes = _segment(image, segmenter)
    if isinstance(mask, Image.Image):
        if mask.mode not in ("1", "L", "P"):
            raise ValueError(f"mask must be a mode 1, L or P image, not {mask.mode}")
        if mask.size != image.size:
            raise ValueError(f"mask is {mask.size[0]}x{mask.size[1]}, image is {image.size[0]}x{image.size[1]}")
        mask = np.asarray(mask)
    mask = np.asarray(mask)
    if mask.ndim != 2 or not (mask.dtype == bool or np.issubdtype(mask.dtype, np.integer)):
        raise ValueError(f"mask must be a 2-D bool or integer array, got {mask.dtype} {mask.shape}")
    if mask.shape != (image.height, image.width):
        raise ValueError(f"mask shape {mask.shape} does not match the image's (height, width) {(image.height, image.width)}")
    return np.ascontiguousarray(mask != 0, dtype=np.uint8), classes


def apply_no_subject(mask: np.ndarray, policy: str) -> tuple[np.ndarray, str | None]:
    """(mask, what happened) under the ``no_subject`` policy: a mask with a subject pixel is
    returned as is with None; an empty one becomes the whole frame ("keep"), stays empty
    ("background") or raises ValueError ("error")."""
    if mask.any():
        return mask, None
    if policy == "error":
        raise ValueError("no subject found in the image (the mask is empty); pass mask=, or "
                         "no_subject='keep' (the whole frame) or 'background' (the background alone)")
    return (np.ones_like(mask) if policy == "keep" else mask), policy


def _segment(image: Image.Image, segmenter: Any) -> tuple[Image.Image, dict | None]:
    if not callable(segmenter):
        segmenter = _load_segmenter(None if segmenter is None else str(segmenter))
    if not hasattr(segmenter, "segment"):
        return segmenter(image), None
    found = segmenter.segment(image)
    return found.mask, _class_pixels(found)


def _class_pixels(found) -> dict[str, int] | None:
    """{class name: subject pixels of that class}, largest first; None if classes are unknown."""
    if found.class_map is None:
        return None
    ids, counts = np.unique(np.asarray(found.class_map)[np.asarray(found.mask) != 0], return_counts=True)
    pixels: dict[str, int] = {}
    for i, n in zip(ids.tolist(), counts.tolist()):
        if i:
            name = str(found.class_names.get(i, f"class {i}"))
            pixels[name] = pixels.get(name, 0) + n
    return dict(sorted(pixels.items(), key=lambda item: -item[1])) or None


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Smallest (x0, y0, width, height) holding every subject pixel; (0, 0, 0, 0) if none."""
    rows = np.flatnonzero(np.asarray(mask).any(axis=1))
    if rows.size == 0:
        return 0, 0, 0, 0
    cols = np.flatnonzero(np.asarray(mask).any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


@functools.lru_cache(maxsize=4)
def _load_segmenter(name_or_path: str | None):
    try:
        from .segment import load_segmenter

        return load_segmenter(name_or_path)
    except ImportError as exc:
        raise ImportError(
            f"saving .ppan without mask= needs a segmentation model: {INSTALL_HINT}, "
            f"or pass mask= ({exc})"
        ) from exc
