"""Metadata chunks <-> Pillow ``info``: EXIF, ICC profile and XMP (spec/FORMAT.md §9)."""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import brotli
from PIL import Image

from .streams import brotli_decompress

EXIF_PREFIX = b"Exif\x00\x00"
MAX_VALUE = 16 << 20
STORED, BROTLI = 0, 1
_KEYS = {b"exif": "exif", b"iccp": "icc_profile", b"xmpd": "xmp"}


def pack(params: Mapping[str, Any]) -> dict[bytes, bytes]:
    """Metadata chunk payloads from save parameters (``exif``, ``icc_profile``, ``xmp``)."""
    chunks = {}
    for chunk_type, key in _KEYS.items():
        value = params.get(key)
        if isinstance(value, Image.Exif):
            value = value.tobytes()
        if isinstance(value, str):
            value = value.encode("utf-8")
        if not value:
            continue
        value = bytes(value)
        if key == "exif" and value.startswith(EXIF_PREFIX):
            value = value[len(EXIF_PREFIX) :]
        if len(value) > MAX_VALUE:
            raise ValueError(f"{key} is {len(value)} bytes; PPAN allows at most {MAX_VALUE}")
        packed = brotli.compress(value, quality=9)
        chunks[chunk_type] = bytes([BROTLI]) + packed if len(packed) < len(value) else bytes([STORED]) + value
    return chunks


def unpack(chunks: Mapping[bytes, bytes]) -> dict[str, bytes]:
    """Pillow ``info`` entries from metadata chunks; a malformed one is skipped with a warning."""
    info = {}
    for chunk_type, payload in chunks.items():
        key = _KEYS[chunk_type]
        try:
            value = _unpack_value(payload)
        except OSError as exc:
            warnings.warn(f"skipping PPAN {chunk_type.decode()} chunk: {exc}")
            continue
        info[key] = EXIF_PREFIX + value if key == "exif" else value
    return info


def _unpack_value(payload: bytes) -> bytes:
    if not payload or payload[0] not in (STORED, BROTLI):
        raise OSError("unknown compression method")
    if payload[0] == BROTLI:
        return brotli_decompress(payload[1:], MAX_VALUE, "metadata")
    if len(payload) - 1 > MAX_VALUE:
        raise OSError("value larger than 16 MiB")
    return payload[1:]
