"""Write the seed corpus of every harness to fuzz/seeds/<folder>/ (generated, not committed).

Small valid files of every mode (L, RGB, RGBA) and option: background scales 1-8,
feathers 0-32, every subject coding (subject.NAMES), empty, full, single-pixel, ring and
striped masks, metadata chunks; and, for the layer harnesses, the layer payloads of
the fixed headers of ppan_fuzz.LAYER_FIXTURES.

Usage: python fuzz/make_seeds.py [--out fuzz/seeds]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import brotli

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ppan_fuzz  # noqa: E402

EXIF = b"MM\x00*\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00"

# (width, height, channels, mask kind, scale, feather, coding, metadata)
FILE_CONFIGS = [
    (12, 9, 1, "ellipse", 1, 0, "webp", {}),
    (12, 9, 1, "ellipse", 2, 1, "med", {}),
    (17, 11, 1, "pixel", 3, 2, "med", {"xmp": "<x:xmpmeta/>"}),
    (16, 16, 1, "full", 4, 0, "webp", {}),
    (9, 7, 1, "empty", 5, 3, "auto", {}),
    (20, 14, 3, "ellipse", 2, 2, "webp", {}),
    (20, 14, 3, "ellipse", 2, 2, "med", {}),
    (21, 13, 3, "ring", 3, 4, "med", {"icc_profile": b"not really an ICC profile" * 4}),
    (21, 13, 3, "ring", 3, 4, "webp", {"exif": EXIF}),
    (24, 8, 3, "stripes", 4, 1, "med", {}),
    (15, 15, 3, "full", 6, 0, "webp", {}),
    (10, 10, 3, "empty", 7, 2, "auto", {"xmp": "<x/>", "exif": EXIF, "icc_profile": b"icc"}),
    (33, 9, 3, "pixel", 8, 32, "med", {}),
    (40, 30, 3, "ellipse", 8, 8, "auto", {}),
    (1, 1, 3, "full", 1, 0, "med", {}),
    (1, 1, 3, "empty", 1, 5, "auto", {}),
    (14, 10, 4, "ellipse", 1, 3, "webp", {}),
    (14, 10, 4, "ellipse", 2, 3, "med", {}),
    (19, 12, 4, "ring", 5, 6, "med", {"icc_profile": b"icc" * 30}),
    (19, 12, 4, "stripes", 4, 2, "webp", {}),
    (8, 8, 4, "full", 8, 0, "med", {}),
    (11, 6, 4, "empty", 3, 1, "auto", {}),
    (2, 30, 4, "pixel", 2, 32, "webp", {"xmp": "<x/>"}),
    (30, 2, 1, "stripes", 6, 12, "med", {}),
]


def subject_codings() -> list[str]:
    """Every SUBJ coding but 0, by the name encode_file takes ("cm-near": coding 5)."""
    from peterpan_format import subject

    return [name for name in subject.NAMES.values() if name != "none"]


def file_seeds() -> dict[str, bytes]:
    seeds, configs = {}, list(FILE_CONFIGS)
    for coding in subject_codings():  # every coding in every mode, whatever "auto" picks
        configs += [(13, 9, 1, "ring", 2, 2, coding, {}), (13, 9, 3, "stripes", 3, 1, coding, {}),
                    (13, 9, 4, "ellipse", 4, 3, coding, {})]
    for width, height, channels, kind, scale, feather, coding, meta in configs:
        mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
        name = f"{mode}-{width}x{height}-{kind}-s{scale}-f{feather}-{coding}" + ("-meta" if meta else "")
        seeds[name + ".ppan"] = ppan_fuzz.encode_file(
            width, height, channels, kind, seed=len(seeds), background_scale=scale, feather=feather,
            subject_coding=coding, **meta)
    from peterpan_format.jpeg.payload import segments_of

    with segments_of(1):  # coder 3 (spec §6.4.5.6) even for seed-sized images
        for width, height, channels in [(24, 40, 3), (16, 48, 1)]:
            mode = {1: "L", 3: "RGB"}[channels]
            seeds[f"{mode}-{width}x{height}-ellipse-jpeg-segments.ppan"] = ppan_fuzz.encode_file(
                width, height, channels, "ellipse", seed=len(seeds), background_scale=2, feather=1,
                subject_coding="jpeg")
    return seeds


def layer_seeds() -> dict[str, dict[str, bytes]]:
    from peterpan_format._kernels.rle import encode_mask

    folders = {"mask": {}, "background": {}, "subject": {}, "metadata": {}}
    for i, fixture in enumerate(ppan_fuzz.LAYER_FIXTURES):
        codings = ["auto"] if fixture[5] == "empty" else subject_codings()
        for coding in codings:
            layers = ppan_fuzz.fixture_layers(i, coding)
            folders["subject"][f"{i}-{coding}"] = bytes([i]) + layers[b"SUBJ"]
            folders["mask"][f"{i}"] = bytes([i]) + layers[b"MASK"]
            folders["background"][f"{i}"] = bytes([i]) + layers[b"BGND"]
            # raw streams (high bit of the first byte): an old file's mask runs, the MED residuals
            folders["mask"][f"{i}-runs"] = bytes([i | 0x80]) + encode_mask(ppan_fuzz.fixture(i)[1]).tobytes()
            if layers[b"SUBJ"][0] == 2:
                folders["subject"][f"{i}-residuals"] = bytes([i | 0x80]) + brotli.decompress(layers[b"SUBJ"][17:])
    from peterpan_format import metadata

    from peterpan_format.container import METADATA_TYPES

    values = {"exif": b"Exif\x00\x00" + EXIF, "icc_profile": b"\x00\x00\x02\x0c" + b"icc-profile" * 40,
              "xmp": "<x:xmpmeta>" + "a" * 200 + "</x:xmpmeta>",
              "subject_classes": {"person": 51234, "cat": 678, "bicyclist": 9}}
    for key, value in values.items():
        packed = metadata.pack({key: value})
        for chunk_type, payload in packed.items():
            k = METADATA_TYPES.index(chunk_type)
            folders["metadata"][f"{chunk_type.decode()}-packed"] = bytes([k]) + payload
            raw = metadata.pack_classes(value) if isinstance(value, dict) else value
            raw = raw.encode() if isinstance(raw, str) else raw
            folders["metadata"][f"{chunk_type.decode()}-stored"] = bytes([k, 0]) + raw[:64]
            folders["metadata"][f"{chunk_type.decode()}-raw"] = bytes([k | 0x80]) + raw[:200]
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ppan_fuzz.SEEDS_DIR)
    args = parser.parse_args()
    ppan_fuzz.configure()
    folders = {"files": file_seeds(), **layer_seeds()}
    for folder, seeds in folders.items():
        target = args.out / folder
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for name, data in seeds.items():
            (target / name).write_bytes(data)
        total = sum(len(d) for d in seeds.values())
        print(f"{target}: {len(seeds)} seeds, {total} bytes")


if __name__ == "__main__":
    main()
