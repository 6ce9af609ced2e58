"""Decompression bombs at full size: the bound of spec §10 on files of a few hundred bytes.

tests/corpus/make_corpus.py ``bombs()`` makes tiny files whose layers describe a whole
W x H image (JPEG coefficients of every block, an escape for every value, an empty
stream over the box, MED residuals of an RGBA box, an empty mask); the test suite decodes
them at 2048 x 1536. This script builds them at the sizes of issue 14 and checks, each in
a fresh process, that decoding stays within the memory the process had before plus 4 x
the image (W x H x channels bytes) and 2 s + pixels / (3 MP/s) of CPU time.

    python fuzz/bombs.py [--size 6000x6000] [--size 13000x13000]

Needs memory for the largest image (13000 x 13000 RGBA: 676 MB, so up to 2.7 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "corpus"))

_DECODE = r"""
import json, sys, time
from PIL import Image
import peterpan_format
Image.MAX_IMAGE_PIXELS = None
def status(key):
    return int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1]) * 1024
try:  # a small file of the same kind: kernels loaded
    with Image.open(sys.argv[2]) as im:
        im.load()
except OSError:
    pass
open("/proc/self/clear_refs", "w").write("5")
before = status("VmRSS")
cpu = time.process_time()
error = None
try:
    with Image.open(sys.argv[1]) as im:
        im.load()
except OSError as exc:
    error = str(exc)
print(json.dumps({"grew": status("VmHWM") - before, "cpu": time.process_time() - cpu, "error": error}))
"""


def check(size: tuple[int, int], folder: Path) -> bool:
    import make_corpus

    ok = True
    small = {name: data for name, data, *_ in make_corpus.bombs(64, 48)}
    for name, data, at, *_ in make_corpus.bombs(*size):
        path, warm = folder / f"{name}.ppan", folder / f"{name}.warm.ppan"
        path.write_bytes(data)
        warm.write_bytes(small[name])
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
        out = subprocess.run([sys.executable, "-c", _DECODE, str(path), str(warm)], capture_output=True, text=True,
                             env=env, check=True)
        got = json.loads(out.stdout)
        image = size[0] * size[1] * (4 if "rgba" in name else 3)
        grew, cpu_limit = got["grew"] / image, 2 + size[0] * size[1] / 3e6
        good = grew <= 4 and got["cpu"] <= cpu_limit and (got["error"] is None) == (at == "none")
        ok &= good
        print(f"{'ok  ' if good else 'FAIL'} {name:28s} {size[0]}x{size[1]} {len(data):4d} bytes: "
              f"peak {grew:.2f} x the image, {got['cpu']:.1f} s CPU (limit {cpu_limit:.0f} s)"
              + (f", {got['error']}" if got["error"] else ""))
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", action="append", help="WxH (default: 6000x6000 and 13000x13000)")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.size or ["6000x6000", "13000x13000"]]
    with tempfile.TemporaryDirectory() as tmp:
        ok = all([check(size, Path(tmp)) for size in sizes])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
