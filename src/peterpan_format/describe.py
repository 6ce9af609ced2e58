"""What a .ppan file holds: header, chunks, layer sizes and codings, subject area (``ppan info``)."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

from . import container, metadata, subject
from .container import BGND, MASK, SUBJ



def describe(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON-ready description of the file at ``path`` (raises OSError if it is malformed)."""
    from .codec import decode_mask_layer

    path = Path(path)
    with path.open("rb") as fp:
        header = container.read_head(fp)
        collector = container.LayerCollector()
        chunks = [{"type": "HEAD", "bytes": len(header.pack()), "critical": True}]
        while not collector.done:
            chunk_type, data = container.read_chunk(fp)
            collector.add(chunk_type, data)
            chunks.append({"type": chunk_type.decode(), "bytes": len(data),
                           "critical": container.is_critical(chunk_type)})
    layers = collector.layers
    mask = decode_mask_layer(layers[MASK], header)
    subject_pixels = int(mask.sum())
    if len(layers[SUBJ]) < 17:
        raise OSError("PPAN SUBJ chunk is too short")
    coding, *box = struct.unpack_from(">BIIII", layers[SUBJ])
    file_bytes = path.stat().st_size
    return {
        "path": str(path),
        "format": "PPAN",
        "version": header.version,
        "width": header.width,
        "height": header.height,
        "mode": header.mode,
        "background_scale": header.scale,
        "feather": header.feather,
        "file_bytes": file_bytes,
        "bits_per_pixel": round(file_bytes * 8 / (header.width * header.height), 4),
        "subject": {
            "pixels": subject_pixels,
            "area": round(subject_pixels / (header.width * header.height), 4),
            "box": box,
            "coding": subject.NAMES.get(coding, f"unknown ({coding})"),
            "bytes": len(layers[SUBJ]),
            "classes": metadata.unpack({t: v for t, v in collector.metadata.items() if t == b"clas"})
            .get("subject_classes", {}),
        },
        "background": {"size": list(header.background_size), "coding": "webp", "bytes": len(layers[BGND])},
        "mask": {"coding": "row-runs-brotli", "bytes": len(layers[MASK])},
        "metadata": sorted(t.decode() for t in collector.metadata),
        "chunks": chunks,
    }
