"""The chunk layer: header fields, chunk framing, CRCs, order rules (spec §2, §3, §7)."""

import io
import struct
import zlib

import pytest

from peterpan_format import container
from peterpan_format.container import (BGND, DONE, MASK, SUBJ, ChunkAssembler, Header,
                                       LayerCollector, pack_chunk, read_chunk)


def test_header_round_trip():
    header = Header(640, 480, "RGBA", 4, 8)
    data = header.pack()
    assert len(data) == 14
    assert data == struct.pack(">BBIIBBH", 1, 4, 640, 480, 4, 8, 0)
    assert Header.unpack(data) == header
    assert header.background_size == (160, 120)
    assert Header(641, 479, "L", 4, 0).background_size == (161, 120)


@pytest.mark.parametrize("fields", [
    (0, 3, 10, 10, 4, 8, 0),       # version 0
    (2, 3, 10, 10, 4, 8, 0),       # unknown version
    (1, 2, 10, 10, 4, 8, 0),       # 2 channels
    (1, 3, 0, 10, 4, 8, 0),        # zero width
    (1, 3, 10, 0, 4, 8, 0),        # zero height
    (1, 3, 65536, 10, 4, 8, 0),    # too wide
    (1, 3, 10, 10, 0, 8, 0),       # scale 0
    (1, 3, 10, 10, 9, 8, 0),       # scale 9
    (1, 3, 10, 10, 4, 33, 0),      # feather 33
    (1, 3, 10, 10, 4, 8, 1),       # reserved
])
def test_header_out_of_range(fields):
    with pytest.raises(OSError):
        Header.unpack(struct.pack(">BBIIBBH", *fields))


def test_header_wrong_length():
    with pytest.raises(OSError):
        Header.unpack(Header(10, 10, "L", 1, 0).pack() + b"\0")


def test_chunk_bytes_and_crc():
    chunk = pack_chunk(b"MASK", b"abc")
    assert chunk[:8] == b"\x00\x00\x00\x03MASK"
    assert chunk[8:11] == b"abc"
    assert chunk[11:] == zlib.crc32(b"MASKabc").to_bytes(4, "big")
    assert read_chunk(io.BytesIO(chunk)) == (b"MASK", b"abc")


def test_crc_mismatch():
    chunk = bytearray(pack_chunk(b"MASK", b"abc"))
    chunk[9] ^= 1
    with pytest.raises(OSError, match="CRC"):
        read_chunk(io.BytesIO(bytes(chunk)))


@pytest.mark.parametrize("chunk_type", [b"MA K", b"MAS1", b"\xffASK"])
def test_chunk_type_must_be_letters(chunk_type):
    with pytest.raises(OSError, match="type"):
        read_chunk(io.BytesIO(struct.pack(">I4s", 0, chunk_type) + b"\0" * 4))


def test_huge_length_rejected_before_reading():
    class NoBigReads(io.BytesIO):
        def read(self, size=-1):
            assert size < (1 << 21), "read a huge block"
            return super().read(size)

    with pytest.raises(OSError, match="2\\^30"):
        read_chunk(NoBigReads(struct.pack(">I4s", (1 << 30) + 1, b"MASK")))
    # a length within limits but past the end of the file is read in small blocks
    with pytest.raises(OSError, match="truncated"):
        read_chunk(NoBigReads(struct.pack(">I4s", 1 << 30, b"MASK") + b"x" * 100))


def test_assembler_byte_by_byte():
    stream = pack_chunk(b"BGND", b"1234") + pack_chunk(b"exif", b"") + pack_chunk(b"DONE", b"")
    assembler = ChunkAssembler()
    chunks = [c for i in range(len(stream)) for c in assembler.feed(stream[i : i + 1])]
    assert chunks == [(b"BGND", b"1234"), (b"exif", b""), (b"DONE", b"")]


def test_collector_order_and_skipping():
    collector = LayerCollector()
    chunks = [(b"exif", b"1"), (b"exif", b"2"), (BGND, b"b"), (b"zzzz", b"?"), (MASK, b"m"), (b"iccp", b"late"),
              (SUBJ, b"s"), (DONE, b"")]
    with pytest.warns(UserWarning, match="skipping PPAN iccp chunk after the layers began"):
        for chunk_type, data in chunks:
            collector.add(chunk_type, data)
    assert collector.done
    assert collector.layers == {BGND: b"b", MASK: b"m", SUBJ: b"s", DONE: b""}
    assert collector.metadata == {b"exif": b"1"}  # the first copy, before BGND (spec §9)


@pytest.mark.parametrize("sequence", [
    [MASK],                        # BGND missing
    [BGND, BGND],                  # duplicate
    [BGND, SUBJ],                  # out of order
    [BGND, b"ZZZZ"],               # unknown critical
    [BGND, MASK, SUBJ, container.HEAD],  # HEAD again
])
def test_collector_rejects(sequence):
    collector = LayerCollector()
    with pytest.raises(OSError):
        for chunk_type in sequence:
            collector.add(chunk_type, b"")


def test_done_must_be_empty():
    collector = LayerCollector()
    for chunk_type in (BGND, MASK, SUBJ):
        collector.add(chunk_type, b"")
    with pytest.raises(OSError, match="DONE"):
        collector.add(DONE, b"x")


def test_critical_bit():
    assert container.is_critical(b"HEAD") and not container.is_critical(b"exif")
