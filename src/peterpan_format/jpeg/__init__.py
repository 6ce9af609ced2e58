"""JPEG input: keep a JPEG photo's subject as its quantised DCT coefficients.

- ``read_jpeg(data)``: parse a JPEG and entropy-decode its coefficients (``JpegImage``).
- ``jpeg_pixels(data)``: the whole image from those coefficients, equal to what Pillow
  (libjpeg-turbo, default settings) decodes.
- ``encode_jpeg_subject(data, mask)`` / ``decode_jpeg_subject(payload, mask)``: the SUBJ
  payload (spec/FORMAT.md §6.4) holding the coefficient blocks the subject pixels
  depend on, and back to the subject pixels of the mask's box.

Unsupported or malformed JPEGs raise ``ValueError`` (callers fall back to coding pixels);
malformed payloads raise ``OSError``.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from . import payload as _payload
from .parser import JpegImage, read_jpeg
from ..masking import box_of
from .pixels import render


def jpeg_pixels(data: bytes) -> np.ndarray:
    """Decode a whole JPEG with our kernels: uint8[H, W, C], C = 3 (RGB) or 1 (grey)."""
    img = read_jpeg(data)
    blocks = []
    for ci, c in enumerate(img.components):
        coef = img.coef[c.offset : c.offset + c.rows * c.stride]
        index = np.arange(c.rows * c.stride, dtype=np.int32).reshape(c.rows, c.stride)
        blocks.append((coef, np.ascontiguousarray(index[: c.nby, : c.nbx])))
    return render(img.components, img.colour, img.qtables, blocks, (0, 0, img.width, img.height))


def _box_pixels(comps, colour, qtables, blocks, mask) -> np.ndarray:
    x0, y0, w, h = box = box_of(mask)
    if w == 0:
        return np.zeros((0, 0, len(comps)), np.uint8)
    return render(comps, colour, qtables, blocks, box, np.asarray(mask)[y0 : y0 + h, x0 : x0 + w])


def encode_jpeg_subject(
    jpeg_bytes: bytes,
    mask: np.ndarray,
    *,
    coder: str = "auto",
    verify: bool = True,
    pixels: np.ndarray | None = None,
) -> bytes:
    """The payload keeping the coefficient blocks that the subject pixels of ``mask`` need.

    ``mask`` (H, W), nonzero = subject, in the JPEG's stored orientation. ``coder`` is
    "brotli", "arith" or "auto" (the smaller). With ``verify`` the payload is decoded
    and its subject pixels compared with Pillow's decoding of ``jpeg_bytes`` (or with
    ``pixels``, (H, W[, C]) as Pillow decoded them): a difference raises ValueError, so
    that the caller falls back to coding pixels. Unsupported JPEGs raise ValueError too.
    """
    mask = np.asarray(mask)
    img = read_jpeg(jpeg_bytes)
    if mask.shape != (img.height, img.width):
        raise ValueError(f"mask is {mask.shape[::-1]}, the JPEG {img.width}x{img.height}")
    data = _payload.build(img, mask, coder)
    if verify:
        if pixels is None:
            try:
                with Image.open(io.BytesIO(jpeg_bytes)) as im:
                    pixels = np.asarray(im)
            except (OSError, SyntaxError, ValueError) as exc:
                raise ValueError(f"unsupported JPEG: Pillow cannot decode it ({exc})") from exc
        pixels = np.asarray(pixels)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        got = decode_jpeg_subject(data, mask)
        x0, y0, w, h = box_of(mask)
        sel = mask[y0 : y0 + h, x0 : x0 + w] != 0
        ref = pixels[y0 : y0 + h, x0 : x0 + w]
        if ref.shape != got.shape or ((got != ref).any(axis=2) & sel).any():
            raise ValueError("unsupported JPEG: its coefficients do not reproduce Pillow's pixels")
    return data


def decode_jpeg_subject(payload: bytes, mask: np.ndarray) -> np.ndarray:
    """Pixels uint8[h, w, C] of the mask's subject box (C = 3 RGB, 1 grey).

    Exact (equal to Pillow's decoding of the original JPEG) at every subject pixel; the
    box's other pixels are 0. An empty mask gives a (0, 0, C) array. A malformed payload
    raises OSError.
    """
    head, blocks = _payload.read(payload, mask)
    return _box_pixels(head.components, head.colour, head.qtables, blocks, mask)


__all__ = [
    "JpegImage",
    "read_jpeg",
    "jpeg_pixels",
    "encode_jpeg_subject",
    "decode_jpeg_subject",
]
