"""Metadata chunks <-> Pillow ``info``: EXIF, ICC profile, XMP, subject classes and what the
encoder did when there was no subject (spec/FORMAT.md §9)."""

from __future__ import annotations

import numbers
import struct
import warnings
from typing import Any, Mapping

import brotli
from PIL import Image

from .streams import brotli_decompress

EXIF_PREFIX = b"Exif\x00\x00"
TIFF_HEADERS = (b"II*\x00", b"MM\x00*")
MAX_VALUE = 16 << 20
STORED, BROTLI = 0, 1
_KEYS = {b"exif": "exif", b"iccp": "icc_profile", b"xmpd": "xmp", b"clas": "subject_classes",
         b"nsub": "no_subject"}
NO_SUBJECT_VALUES = ("keep", "background")
_CLASS_PIXELS = struct.Struct(">I")
MAX_CLASSES = 255


def pack(params: Mapping[str, Any], inherited: Mapping[str, Any] | None = None) -> dict[bytes, bytes]:
    """Metadata chunk payloads from save parameters (``exif``, ``icc_profile``, ``xmp``,
    ``subject_classes``, ``no_subject``); a key not in ``params`` is taken from
    ``inherited`` (the image's ``info``). A malformed value raises ValueError, or, if it was
    inherited rather than given, is left out with a warning."""
    chunks = {}
    for chunk_type, key in _KEYS.items():
        given = key in params
        try:
            value = _pack_value(key, params[key] if given else (inherited or {}).get(key))
        except ValueError as exc:
            if given:
                raise
            warnings.warn(f"not saving the image's {key} in PPAN: {exc}")
            continue
        if value is not None:
            chunks[chunk_type] = value
    return chunks


def _pack_value(key: str, value: Any) -> bytes | None:
    if isinstance(value, Image.Exif):
        value = value.tobytes()
    if key == "subject_classes" and value:
        value = pack_classes(value)
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not value:
        return None
    value = bytes(value)
    if key == "exif" and value.startswith(EXIF_PREFIX):
        value = value[len(EXIF_PREFIX) :]
    if len(value) > MAX_VALUE:
        raise ValueError(f"{key} is {len(value)} bytes; PPAN allows at most {MAX_VALUE}")
    _CHECK.get(key, bytes)(value)
    packed = brotli.compress(value, quality=9)
    return bytes([BROTLI]) + packed if len(packed) < len(value) else bytes([STORED]) + value


def unpack(chunks: Mapping[bytes, bytes]) -> dict[str, Any]:
    """Pillow ``info`` entries from metadata chunks; a malformed one is skipped with a warning."""
    info = {}
    for chunk_type, payload in chunks.items():
        key = _KEYS[chunk_type]
        try:
            value = _CHECK.get(key, bytes)(_unpack_value(payload))
        except (OSError, ValueError) as exc:
            warnings.warn(f"skipping PPAN {chunk_type.decode()} chunk: {exc}")
            continue
        info[key] = EXIF_PREFIX + value if key == "exif" else value
    return info


def check_exif(value: bytes) -> bytes:
    """An ``exif`` value: a TIFF structure, starting ``II*\\0`` or ``MM\\0*`` (ValueError otherwise)."""
    if value[:4] not in TIFF_HEADERS:
        raise ValueError(f"EXIF must be a TIFF structure starting II*\\0 or MM\\0* "
                         f"(after an optional Exif\\0\\0), not {value[:8]!r}")
    return value


def check_xmp(value: bytes) -> bytes:
    """An ``xmpd`` value: UTF-8 (ValueError otherwise)."""
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"XMP must be UTF-8 ({exc})") from None
    return value


def pack_classes(classes: Mapping[str, int]) -> bytes:
    """The ``clas`` value of {class name: subject pixels}, in the mapping's order."""
    if not isinstance(classes, Mapping) or len(classes) > MAX_CLASSES:
        raise ValueError(f"subject_classes must be a mapping of at most {MAX_CLASSES} names to pixel counts")
    out = b""
    for name, pixels in classes.items():
        valid = isinstance(name, str) and isinstance(pixels, numbers.Integral) and not isinstance(pixels, bool)
        raw = name.encode("utf-8") if valid else b""
        if not (1 <= len(raw) <= 255 and 0 <= pixels < 1 << 32):
            raise ValueError(f"subject class {name!r}: {pixels!r}: a name of 1-255 UTF-8 bytes and an int "
                             "0 <= pixels < 2**32")
        out += _CLASS_PIXELS.pack(int(pixels)) + bytes([len(raw)]) + raw
    return out


def unpack_classes(value: bytes) -> dict[str, int]:
    """{class name: subject pixels} from a ``clas`` value (ValueError if malformed)."""
    if not value:
        raise ValueError("no class entry")
    classes, pos = {}, 0
    while pos < len(value):
        if pos + 5 > len(value) or pos + 5 + value[pos + 4] > len(value) or value[pos + 4] == 0:
            raise ValueError("class entry cut off or with an empty name")
        name = value[pos + 5 : pos + 5 + value[pos + 4]].decode("utf-8")  # UnicodeDecodeError is a ValueError
        if name in classes or len(classes) == MAX_CLASSES:
            raise ValueError(f"repeated class {name!r} or more than {MAX_CLASSES} classes")
        classes[name] = _CLASS_PIXELS.unpack_from(value, pos)[0]
        pos += 5 + value[pos + 4]
    return classes


def unpack_no_subject(value: bytes) -> str:
    """The ``nsub`` value: "keep" or "background" (ValueError otherwise)."""
    if value.decode("ascii", "replace") not in NO_SUBJECT_VALUES:
        raise ValueError(f"unknown no-subject policy {value[:16]!r}")
    return value.decode("ascii")


#: per info key, the check (and the decoding) of a value, in both directions
_CHECK = {"exif": check_exif, "xmp": check_xmp, "subject_classes": unpack_classes, "no_subject": unpack_no_subject}


def _unpack_value(payload: bytes) -> bytes:
    if not payload or payload[0] not in (STORED, BROTLI):
        raise OSError("unknown compression method")
    if payload[0] == BROTLI:
        return brotli_decompress(payload[1:], MAX_VALUE, "metadata")
    if len(payload) - 1 > MAX_VALUE:
        raise OSError("value larger than 16 MiB")
    return payload[1:]
