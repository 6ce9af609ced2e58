"""Bytes <-> chunks: the PPAN signature, header and chunk layer (spec/FORMAT.md §2, §3, §7).

Knows nothing about pixels. Every length is checked before anything is allocated.
Violations raise ``OSError`` (the Pillow plugin turns header errors into ``SyntaxError``).
"""

from __future__ import annotations

import struct
import warnings
import zlib
from dataclasses import dataclass
from typing import IO, Iterator

SIGNATURE = b"\x89PAN\r\n\x1a\n"
VERSION = 1
MAX_CHUNK_LENGTH = 1 << 30
MAX_DIMENSION = 65535
MAX_SCALE = 8
MAX_FEATHER = 32
#: the largest maximum error of SUBJ coding 5 (§6.5)
MAX_ERROR = 31
MODES = {1: "L", 3: "RGB", 4: "RGBA"}
CHANNELS = {mode: channels for channels, mode in MODES.items()}

HEAD, BGND, MASK, SUBJ, DONE = b"HEAD", b"BGND", b"MASK", b"SUBJ", b"DONE"
LAYER_ORDER = (BGND, MASK, SUBJ, DONE)  # critical chunks after HEAD, in order
METADATA_TYPES = (b"exif", b"iccp", b"xmpd", b"clas", b"nsub")

_HEADER = struct.Struct(">BBIIBBH")
_CHUNK_HEAD = struct.Struct(">I4s")
_READ_BLOCK = 1 << 20


class TruncatedFile(OSError):
    """The file ends inside a chunk (spec §2.1, §11)."""


@dataclass(frozen=True)
class Header:
    """The HEAD chunk: image geometry and the reconstruction parameters."""

    width: int
    height: int
    mode: str
    scale: int
    feather: int
    version: int = VERSION

    def __post_init__(self):
        if self.version != VERSION:
            raise OSError(f"unsupported PPAN version {self.version}")
        if self.mode not in CHANNELS:
            raise OSError(f"unsupported PPAN mode {self.mode!r}")
        if not (1 <= self.width <= MAX_DIMENSION and 1 <= self.height <= MAX_DIMENSION):
            raise OSError(f"PPAN size {self.width}x{self.height} out of range 1..{MAX_DIMENSION}")
        if not 1 <= self.scale <= MAX_SCALE:
            raise OSError(f"PPAN background scale {self.scale} out of range 1..{MAX_SCALE}")
        if not 0 <= self.feather <= MAX_FEATHER:
            raise OSError(f"PPAN feather {self.feather} out of range 0..{MAX_FEATHER}")

    @property
    def channels(self) -> int:
        return CHANNELS[self.mode]

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def background_size(self) -> tuple[int, int]:
        return -(-self.width // self.scale), -(-self.height // self.scale)

    def pack(self) -> bytes:
        return _HEADER.pack(
            self.version, self.channels, self.width, self.height, self.scale, self.feather, 0
        )

    @classmethod
    def unpack(cls, data: bytes) -> Header:
        if len(data) != _HEADER.size:
            raise OSError(f"PPAN header is {len(data)} bytes, expected {_HEADER.size}")
        version, channels, width, height, scale, feather, reserved = _HEADER.unpack(data)
        if version != VERSION:
            raise OSError(f"unsupported PPAN version {version}")
        if channels not in MODES:
            raise OSError(f"unsupported PPAN channel count {channels}")
        if reserved:
            raise OSError("PPAN header reserved field is not zero")
        return cls(width, height, MODES[channels], scale, feather, version)


def is_critical(chunk_type: bytes) -> bool:
    return not chunk_type[0] & 0x20


def pack_chunk(chunk_type: bytes, data: bytes) -> bytes:
    """One chunk: length, type, data, CRC-32 of type + data."""
    if len(data) > MAX_CHUNK_LENGTH:
        raise ValueError(f"{chunk_type.decode()} chunk of {len(data)} bytes exceeds 2^30")
    crc = zlib.crc32(data, zlib.crc32(chunk_type))
    return _CHUNK_HEAD.pack(len(data), chunk_type) + data + crc.to_bytes(4, "big")


def _parse_chunk_head(head: bytes) -> tuple[int, bytes]:
    length, chunk_type = _CHUNK_HEAD.unpack(head)
    if not chunk_type.isalpha() or not chunk_type.isascii():
        raise OSError(f"invalid PPAN chunk type {chunk_type!r}")
    if length > MAX_CHUNK_LENGTH:
        raise OSError(f"PPAN {chunk_type.decode()} chunk length {length} exceeds 2^30")
    return length, chunk_type


def _check_crc(chunk_type: bytes, data: bytes, crc: bytes) -> None:
    if zlib.crc32(data, zlib.crc32(chunk_type)) != int.from_bytes(crc, "big"):
        raise OSError(f"PPAN {chunk_type.decode()} chunk CRC mismatch")


def _read_exact(fp: IO[bytes], size: int) -> bytes:
    """Read exactly ``size`` bytes in blocks, so a lying length cannot force a huge allocation."""
    parts, remaining = [], size
    while remaining:
        block = fp.read(min(remaining, _READ_BLOCK))
        if not block:
            raise TruncatedFile("truncated PPAN file")
        parts.append(block)
        remaining -= len(block)
    return b"".join(parts)


def read_chunk(fp: IO[bytes]) -> tuple[bytes, bytes]:
    """Read one CRC-checked chunk from a file: (type, data)."""
    length, chunk_type = _parse_chunk_head(_read_exact(fp, _CHUNK_HEAD.size))
    data = _read_exact(fp, length)
    _check_crc(chunk_type, data, _read_exact(fp, 4))
    return chunk_type, data


def peek_chunk_type(fp: IO[bytes]) -> bytes:
    """The type of the next chunk, leaving the file position where it was."""
    position = fp.tell()
    _, chunk_type = _parse_chunk_head(_read_exact(fp, _CHUNK_HEAD.size))
    fp.seek(position)
    return chunk_type


def read_head(fp: IO[bytes]) -> Header:
    """Check the signature and read the HEAD chunk."""
    if fp.read(len(SIGNATURE)) != SIGNATURE:
        raise OSError("not a PPAN file")
    chunk_type, data = read_chunk(fp)
    if chunk_type != HEAD:
        raise OSError(f"PPAN file starts with {chunk_type!r}, expected HEAD")
    return Header.unpack(data)


class ChunkAssembler:
    """Collects bytes fed in pieces and yields each complete, CRC-checked chunk."""

    def __init__(self):
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[bytes, bytes]]:
        self._buffer += data
        while len(self._buffer) >= _CHUNK_HEAD.size:
            length, chunk_type = _parse_chunk_head(bytes(self._buffer[: _CHUNK_HEAD.size]))
            end = _CHUNK_HEAD.size + length + 4
            if len(self._buffer) < end:
                return
            data = bytes(self._buffer[_CHUNK_HEAD.size : end - 4])
            _check_crc(chunk_type, data, bytes(self._buffer[end - 4 : end]))
            del self._buffer[:end]
            yield chunk_type, data


class LayerCollector:
    """Checks the order of the chunks after HEAD and keeps the layers' payloads.

    Critical chunks must come once each in LAYER_ORDER; unknown critical chunks are
    rejected, unknown or repeated ancillary chunks are skipped, and so are metadata chunks
    after BGND (spec §9: metadata comes before the layers), with a warning.
    """

    def __init__(self):
        self.layers: dict[bytes, bytes] = {}
        self.metadata: dict[bytes, bytes] = {}
        self._next = 0

    @property
    def done(self) -> bool:
        return DONE in self.layers

    def add(self, chunk_type: bytes, data: bytes) -> None:
        if self.done:
            return
        if not is_critical(chunk_type):
            if chunk_type in METADATA_TYPES and self._next:
                warnings.warn(f"skipping PPAN {chunk_type.decode()} chunk after the layers began (spec §9)")
            elif chunk_type in METADATA_TYPES:
                self.metadata.setdefault(chunk_type, data)
            return
        if chunk_type not in LAYER_ORDER:
            raise OSError(f"unknown critical PPAN chunk {chunk_type!r}")
        expected = LAYER_ORDER[self._next]
        if chunk_type != expected:
            raise OSError(f"PPAN chunk {chunk_type.decode()} where {expected.decode()} was expected")
        if chunk_type == DONE and data:
            raise OSError("PPAN DONE chunk is not empty")
        self.layers[chunk_type] = data
        self._next += 1


def pack_file(header: Header, layers: dict[bytes, bytes], metadata: dict[bytes, bytes]) -> bytes:
    """A whole file: signature, HEAD, metadata, then the layers in order and DONE."""
    parts = [SIGNATURE, pack_chunk(HEAD, header.pack())]
    parts += [pack_chunk(t, metadata[t]) for t in METADATA_TYPES if t in metadata]
    parts += [pack_chunk(t, layers[t]) for t in LAYER_ORDER[:-1]]
    parts.append(pack_chunk(DONE, b""))
    return b"".join(parts)
