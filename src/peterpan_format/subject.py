"""The SUBJ layer: codings of the subject pixels (spec/FORMAT.md §6)."""

from __future__ import annotations

import io
import struct

import brotli
import numpy as np
from PIL import Image

from ._kernels.entropy import CM_ERRORS, NEAR_MAX, cm_decode, cm_encode
from ._kernels.predict import med_decode, med_encode
from .masking import box_of
from .streams import brotli_array, decode_embedded_webp

NONE, WEBP, MED, CM, JPEG, NEAR = 0, 1, 2, 3, 4, 5
#: the codings a caller can ask for (subject_coding); "cm" writes coding 5 when an error is allowed
CODINGS = {"webp": WEBP, "med": MED, "cm": CM, "jpeg": JPEG}
#: every coding's name, as ``ppan info`` shows it
NAMES = {NONE: "none", WEBP: "webp", MED: "med", CM: "cm", JPEG: "jpeg", NEAR: "cm-near"}
#: the pixel codings "auto" tries. Coding 3 was the smallest on every one of 40 shared photos
#: and is ~10x faster to encode than WebP lossless or MED + Brotli q11
#: (benchmarks/subject_codings.py), so it alone is tried. Coding 4 competes with it when the
#: pixels came from a JPEG file that is at hand.
AUTO = (CM,)
_PREFIX = struct.Struct(">BIIII")

WEBP_LOSSLESS = {"lossless": True, "quality": 100, "method": 4, "exact": True}
WEBP_MAX_SIDE = 16383
BROTLI_QUALITY = 11
BROTLI_WINDOW = 24


def _crop(array: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, w, h = box
    return array[y0 : y0 + h, x0 : x0 + w]


def encode(pixels: np.ndarray, mask: np.ndarray, coding: str = "auto", jpeg: bytes | None = None,
           near: int = 0, quality: int = 0) -> bytes:
    """SUBJ payload for the subject pixels of ``pixels`` (H, W, C) where ``mask`` (H, W) is 1.

    ``near`` = N > 0 allows an error of N per channel: the range coder ("cm") then writes
    coding 5. ``quality`` = q > 0 (with "auto", an L or RGB image) codes the subject as
    a JPEG at quality q instead, rate-distortion optimised (coding 4, jpeg/quantise.py).
    ``jpeg`` is the JPEG file that ``pixels`` were decoded from: "auto" writes the
    smaller of coding 4 with its coefficients (exact, when they reproduce ``pixels`` at
    every subject pixel) and the other candidate; "jpeg" needs coding 4 and raises
    ValueError otherwise.
    """
    box = box_of(mask)
    if box[2] == 0:
        return _PREFIX.pack(NONE, 0, 0, 0, 0)
    crop = np.ascontiguousarray(_crop(pixels, box))
    crop_mask = np.ascontiguousarray(_crop(mask, box), dtype=np.uint8)
    fits_webp = max(box[2], box[3]) <= WEBP_MAX_SIDE
    if coding == "webp" and not fits_webp:
        raise ValueError(f"subject_coding='webp' needs a subject box of at most {WEBP_MAX_SIDE} px a side")
    candidates = []
    if coding in ("auto", "jpeg"):
        kept = _encode_jpeg(jpeg, pixels, mask, required=coding == "jpeg")
        candidates += [(JPEG, kept)] if kept is not None else []
    if quality and coding == "auto" and pixels.shape[2] in (1, 3):
        from .jpeg.quantise import encode_dct_subject

        candidates.append((JPEG, encode_dct_subject(pixels, mask, quality)))
    elif coding != "jpeg":
        wanted = AUTO if coding == "auto" else (CODINGS[coding],)
        # the range coder stops once it is longer than coding 4's payload
        limit = len(candidates[0][1]) if candidates else None
        candidates += [_pixel_coding(c, crop, crop_mask, near, limit) for c in wanted]
    best, data = min((item for item in candidates if item[1] is not None), key=lambda item: len(item[1]))
    return _PREFIX.pack(best, *box) + data


def _encode_jpeg(jpeg: bytes | None, pixels: np.ndarray, mask: np.ndarray, required: bool) -> bytes | None:
    """Coding 4's payload, or None where the JPEG cannot be kept and ``required`` is false."""
    if jpeg is None:
        if required:
            raise ValueError("subject='jpeg' needs an image opened from a JPEG file, or the JPEG's bytes")
        return None
    from .jpeg import encode_jpeg_subject

    try:
        return encode_jpeg_subject(jpeg, mask, pixels=pixels)
    except ValueError as exc:
        if required:
            raise ValueError(f"cannot keep the JPEG's coefficients: {exc}") from exc
        return None


def _pixel_coding(coding: int, crop: np.ndarray, crop_mask: np.ndarray, near: int,
                  limit: int | None = None) -> tuple[int, bytes | None]:
    """(coding, payload); the range coder's payload is None once longer than ``limit``."""
    if near or coding == CM:  # only the range coder has a maximum-error form (coding 5)
        if coding != CM:
            raise ValueError("a maximum error needs subject_coding 'auto', 'cm' or 'jpeg'")
        data = cm_encode(crop, crop_mask, near, limit)
        if data is None:
            return coding, None
        return (NEAR, bytes([near]) + data.tobytes()) if near else (CM, data.tobytes())
    return coding, _ENCODERS[coding](crop, crop_mask)


def _encode_webp(crop: np.ndarray, crop_mask: np.ndarray) -> bytes:
    filled = np.where(crop_mask[:, :, None].astype(bool), crop, 0).astype(np.uint8)
    if filled.shape[2] == 1:
        filled = np.repeat(filled, 3, axis=2)
    out = io.BytesIO()
    Image.fromarray(filled).save(out, "WEBP", **WEBP_LOSSLESS)
    return out.getvalue()


def _encode_med(crop: np.ndarray, crop_mask: np.ndarray) -> bytes:
    residuals = med_encode(crop, crop_mask)
    return brotli.compress(residuals.tobytes(), quality=BROTLI_QUALITY, lgwin=BROTLI_WINDOW)


_ENCODERS = {WEBP: _encode_webp, MED: _encode_med}


def decode(payload: bytes, mask: np.ndarray, channels: int) -> tuple[tuple, np.ndarray | None]:
    """(box, values): values is the (h, w, C) box, defined at its subject pixels (exact, or
    within coding 5's maximum error); (box, None) for an empty mask."""
    if len(payload) < _PREFIX.size:
        raise OSError("PPAN SUBJ chunk is too short")
    coding, *box = _PREFIX.unpack_from(payload)
    box, data = tuple(box), payload[_PREFIX.size :]
    if box != box_of(mask):
        raise OSError(f"PPAN SUBJ box {box} does not match the mask's box {box_of(mask)}")
    if coding == NONE:
        if data or box[2]:
            raise OSError("PPAN SUBJ coding 0 needs an empty mask and no payload")
        return box, None
    if box[2] == 0:
        raise OSError("PPAN SUBJ has a coding but the mask is empty")
    crop_mask = np.ascontiguousarray(_crop(mask, box), dtype=np.uint8)
    if coding == WEBP:
        return box, _decode_webp(data, box, channels)
    if coding == MED:
        return box, _decode_med(data, crop_mask, channels)
    if coding == CM:
        return box, _decode_cm(data, crop_mask, channels)
    if coding == NEAR:
        if not data or not 1 <= data[0] <= NEAR_MAX:
            raise OSError(f"PPAN SUBJ coding 5 needs a maximum error N of 1 to {NEAR_MAX}")
        return box, _decode_cm(data[1:], crop_mask, channels, data[0])
    if coding == JPEG:
        return box, _decode_jpeg(data, mask, channels)
    raise OSError(f"unknown PPAN SUBJ coding {coding}")


def _decode_webp(data: bytes, box: tuple, channels: int) -> np.ndarray:
    mode = "RGBA" if channels == 4 else "RGB"
    if data[12:16] != b"VP8L":
        raise OSError("PPAN SUBJ coding 1 needs a simple-format lossless (VP8L) WebP")
    values = np.asarray(decode_embedded_webp(data, (box[2], box[3]), mode, "SUBJ"))
    return values[:, :, :1] if channels == 1 else values


def _decode_med(data: bytes, crop_mask: np.ndarray, channels: int) -> np.ndarray:
    expected = channels * int(np.count_nonzero(crop_mask))
    residuals = brotli_array(data, expected, "SUBJ residuals")
    if len(residuals) != expected:
        raise OSError(f"PPAN SUBJ residuals are {len(residuals)} bytes, expected {expected}")
    values, status = med_decode(residuals, crop_mask, channels)
    if status:
        raise OSError("PPAN SUBJ residuals do not match the mask")
    return values


def _decode_cm(data: bytes, crop_mask: np.ndarray, channels: int, near: int = 0) -> np.ndarray:
    values, status = cm_decode(data, crop_mask, channels, near)
    if status:
        raise OSError(f"PPAN SUBJ coding {NEAR if near else CM}: {CM_ERRORS[status]}")
    return values


def _decode_jpeg(data: bytes, mask: np.ndarray, channels: int) -> np.ndarray:
    from .jpeg import decode_jpeg_subject

    values = decode_jpeg_subject(data, mask)
    if values.shape[2] != channels:
        raise OSError(f"PPAN SUBJ coding 4 has {values.shape[2]} components for a {channels}-channel image")
    return values
