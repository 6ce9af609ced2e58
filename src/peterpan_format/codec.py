"""Pixels <-> layers: encode an image and its subject mask to PPAN bytes, and back.

Pure functions on NumPy arrays (H, W, C) of uint8; no Pillow plugin code.
Spec: spec/FORMAT.md §4, §5 and §8.
"""

from __future__ import annotations

import io
import struct

import brotli
import numpy as np
from PIL import Image

from . import subject
from ._kernels.blend import feather, paste
from ._kernels.resample import area_downsample, bicubic_upsample
from ._kernels.mask_coder import MASK_CODER_ERRORS, decode_mask_box, encode_mask_box
from ._kernels.rle import MASK_ERRORS, decode_mask
from .container import BGND, MASK, MAX_DIMENSION, SUBJ, Header, pack_file
from .masking import box_of
from .options import EncodeOptions
from .streams import brotli_array, decode_embedded_webp
from .subject import WEBP_MAX_SIDE

_BACKGROUND_PREFIX = struct.Struct(">BII")
BACKGROUND_WEBP = 1
MASK_ROW_RUNS, MASK_CONTEXT = 1, 2
_MASK_BOX = struct.Struct(">BHHHH")
WEBP_LOSSY_METHOD = 6


def encode(pixels: np.ndarray, mask: np.ndarray, mode: str, options: EncodeOptions,
           metadata: dict[bytes, bytes] | None = None, jpeg: bytes | None = None) -> bytes:
    """A whole .ppan file for ``pixels`` (H, W, C) whose subject is where ``mask`` (H, W) is set.

    ``jpeg``: the JPEG file ``pixels`` were decoded from, if any (for SUBJ coding 4).
    """
    height, width = mask.shape
    if max(width, height) > MAX_DIMENSION:
        raise ValueError(f"PPAN images are at most {MAX_DIMENSION} px a side, not {width}x{height}")
    header = Header(width, height, mode, options.background_scale, options.feather)
    mask = np.ascontiguousarray(mask != 0, dtype=np.uint8)
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    layers = {
        BGND: encode_background(pixels, mask, header, options.background_quality),
        MASK: encode_mask_layer(mask),
        SUBJ: subject.encode(pixels, mask, options.coding, jpeg, options.near, options.dct_quality),
    }
    return pack_file(header, layers, metadata or {})


def decode(header: Header, layers: dict[bytes, bytes], reduced: bool = False) -> np.ndarray:
    """The image (H, W, C) from the layers; only the background (bh, bw, C) if ``reduced``.

    Layers that are missing (a truncated file) are left out: no BGND gives a black
    (transparent) background, no MASK or SUBJ gives the background alone. The subject is
    decoded before the image is allocated and every step works in place, so that the
    memory held stays within a few times the image (spec §10).
    """
    if BGND in layers:
        background = decode_background(layers[BGND], header)
    else:
        background = np.zeros((*header.background_size[::-1], header.channels), np.uint8)
    if reduced:
        return background
    if MASK not in layers or SUBJ not in layers:
        return bicubic_upsample(background, header.scale, header.width, header.height)
    mask = decode_mask_layer(layers[MASK], header)
    box, values = subject.decode(layers[SUBJ], mask, header.channels)
    image = bicubic_upsample(background, header.scale, header.width, header.height)
    if values is not None:
        paste(image, values, box, mask)
        del values
        feather(image, mask, box, header.feather, background, header.scale)
    return image


def encode_background(pixels: np.ndarray, mask: np.ndarray, header: Header, quality: int) -> bytes:
    """BGND payload: the image area-averaged by the scale (background pixels first), as lossy WebP."""
    if max(header.background_size) > WEBP_MAX_SIDE:
        raise ValueError(f"a {header.width}x{header.height} image needs background_scale >= "
                         f"{-(-max(header.size) // WEBP_MAX_SIDE)} (WebP is limited to {WEBP_MAX_SIDE} px)")
    small = area_downsample(pixels, header.scale, mask)
    if header.channels == 1:
        small = np.repeat(small, 3, axis=2)
    out = io.BytesIO()
    Image.fromarray(small).save(out, "WEBP", quality=quality, method=WEBP_LOSSY_METHOD)
    return _BACKGROUND_PREFIX.pack(BACKGROUND_WEBP, *header.background_size) + out.getvalue()


def decode_background(payload: bytes, header: Header) -> np.ndarray:
    """The background B (bh, bw, C) of a BGND payload."""
    if len(payload) < _BACKGROUND_PREFIX.size:
        raise OSError("PPAN BGND chunk is too short")
    coding, width, height = _BACKGROUND_PREFIX.unpack_from(payload)
    if coding != BACKGROUND_WEBP:
        raise OSError(f"unknown PPAN BGND coding {coding}")
    if (width, height) != header.background_size:
        raise OSError(f"PPAN BGND is {width}x{height}, expected {header.background_size}")
    mode = "RGBA" if header.channels == 4 else "RGB"
    rgb = np.asarray(decode_embedded_webp(payload[_BACKGROUND_PREFIX.size :], (width, height), mode, "BGND"))
    if header.channels == 1:
        r, g, b = (rgb[:, :, i].astype(np.uint32) for i in range(3))
        return ((r * 19595 + g * 38470 + b * 7471 + 32768) >> 16).astype(np.uint8)[:, :, None]
    return np.ascontiguousarray(rgb)


def encode_mask_layer(mask: np.ndarray) -> bytes:
    """MASK payload, coding 2: the mask's box, then its pixels context-modelled (§5.2)."""
    x0, y0, w, h = box = box_of(mask)
    stream = encode_mask_box(mask[y0 : y0 + h, x0 : x0 + w]) if w else b""
    return _MASK_BOX.pack(MASK_CONTEXT, *box) + stream


def decode_mask_layer(payload: bytes, header: Header) -> np.ndarray:
    """The mask (H, W) of 0/1 from a MASK payload (coding 1 or 2)."""
    if payload[:1] == bytes([MASK_ROW_RUNS]):
        limit = header.height * (header.width + 1)
        runs = brotli_array(payload[1:], limit, "MASK runs")
        mask, status = decode_mask(runs, header.width, header.height)
        if status:
            raise OSError(f"PPAN MASK: {MASK_ERRORS[status]}")
        return mask
    if payload[:1] != bytes([MASK_CONTEXT]):
        raise OSError("unknown or missing PPAN MASK coding")
    if len(payload) < _MASK_BOX.size:
        raise OSError("PPAN MASK coding 2 payload is too short")
    _, x0, y0, w, h = _MASK_BOX.unpack_from(payload)
    stream = payload[_MASK_BOX.size :]
    mask = np.zeros((header.height, header.width), np.uint8)
    if w == 0 or h == 0:
        if (x0, y0, w, h) != (0, 0, 0, 0) or stream:
            raise OSError("PPAN MASK: an empty box must be (0, 0, 0, 0) with no stream")
        return mask
    if x0 + w > header.width or y0 + h > header.height:
        raise OSError(f"PPAN MASK box {(x0, y0, w, h)} passes the image")
    box, status = decode_mask_box(stream, w, h)
    if status:
        raise OSError(f"PPAN MASK: {MASK_CODER_ERRORS[status]}")
    mask[y0 : y0 + h, x0 : x0 + w] = box
    if box_of(mask) != (x0, y0, w, h):
        raise OSError(f"PPAN MASK box {(x0, y0, w, h)} is not the box of its pixels")
    return mask
