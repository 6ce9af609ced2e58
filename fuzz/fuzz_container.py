"""Harness (b): the chunk layer alone (container.read_head, read_chunk, ChunkAssembler,
LayerCollector).

The file after HEAD is read twice, chunk by chunk with ``read_chunk`` (as ``verify()`` does)
and fed in pieces to a ``ChunkAssembler`` (as the decoder is fed); both must see the same
chunks and fail the same way.
Run: ``python fuzz/fuzz_container.py fuzz/corpus/container fuzz/seeds/files -max_total_time=60``
"""

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ppan_fuzz  # noqa: E402

ppan_fuzz.setup(instrument=__name__ == "__main__")

from peterpan_format import container  # noqa: E402
from peterpan_format.container import ChunkAssembler, LayerCollector  # noqa: E402


def _by_reader(fp):
    collector, error = LayerCollector(), None
    try:
        while not collector.done:
            collector.add(*container.read_chunk(fp))
    except OSError as exc:
        error = exc
    return collector, error


def _by_assembler(rest: bytes, step: int):
    assembler, collector, error = ChunkAssembler(), LayerCollector(), None
    try:
        for i in range(0, len(rest), step):
            for chunk_type, data in assembler.feed(rest[i : i + step]):
                collector.add(chunk_type, data)
                if collector.done:
                    return collector, None
    except OSError as exc:
        error = exc
    return collector, error


def TestOneInput(data: bytes) -> None:
    with ppan_fuzz.guarded("container"):
        fp = io.BytesIO(data)
        header = container.read_head(fp)
        assert header.pack() == data[16:30]
        start = fp.tell()
        if len(data) % 3 == 0:  # the plugin's _open path: peek, then read ancillary chunks
            try:
                while not container.is_critical(container.peek_chunk_type(fp)):
                    container.read_chunk(fp)
            except OSError:
                pass
            fp.seek(start)
        reader, reader_error = _by_reader(fp)
        assembler, assembler_error = _by_assembler(data[start:], 1 + len(data) % 61)
        if reader.done:
            assert assembler.done and assembler_error is None
            assert reader.layers == assembler.layers and reader.metadata == assembler.metadata
        elif reader_error is not None and "truncated" in str(reader_error):
            assert not assembler.done and assembler_error is None, assembler_error
        else:
            assert str(reader_error) == str(assembler_error), (reader_error, assembler_error)


if __name__ == "__main__":
    ppan_fuzz.main(TestOneInput)
