"""What a new process pays before its first .ppan image: the start-up hook and the first decode.

Usage: python benchmarks/startup.py [--runs N]

- The start-up hook: CPU time of ``python -c "import PIL.Image"`` with the hook and with
  ``PPAN_NO_AUTOLOAD=1``, alternated, median of N runs each (CPU time, not wall time, so a
  busy machine blurs it less).
- The first decode, in a fresh process, of a 200 x 150 file with a pixel subject (SUBJ
  coding 3) and one with a JPEG's coefficients (coding 4): with an empty Numba cache
  (``NUMBA_CACHE_DIR`` a new folder: every kernel the file needs compiles), then with that
  cache filled (what every later process pays), then after ``python -m peterpan_format.warmup``
  into another new folder. CPU time of the process (user + system; compiling is
  single-threaded, so on an idle machine this is the wall time, and a busy one blurs it
  less), with the wall time in brackets; median of 3 for the warm ones (cold: one run each).
Prints a Markdown table.
"""

import argparse
import io
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

DECODE = "from PIL import Image; Image.open({path!r}).load()"


def files(folder: Path) -> dict[str, Path]:
    import peterpan_format

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:150, 0:200]
    pixels = np.clip(np.stack([x + y, 2 * x, 255 - y], 2) + rng.integers(-9, 10, (150, 200, 3)), 0, 255)
    image = Image.fromarray(pixels.astype(np.uint8))
    mask = (x - 100) ** 2 + (y - 75) ** 2 < 50**2
    jpeg = io.BytesIO()
    image.save(jpeg, "JPEG", quality=90)
    out = {"pixel subject (coding 3)": folder / "pixels.ppan", "JPEG coefficients (coding 4)": folder / "jpeg.ppan"}
    peterpan_format.save(image, out["pixel subject (coding 3)"], mask=mask)
    out["JPEG coefficients (coding 4)"].write_bytes(peterpan_format.from_jpeg(jpeg.getvalue(), mask=mask, subject="jpeg"))
    return out


def run(args: list[str], env: dict) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of ``python *args``."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, check=True, stdout=subprocess.DEVNULL)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, wall


def median_run(args: list[str], env: dict, runs: int = 3) -> tuple[float, float]:
    times = [run(args, env) for _ in range(runs)]
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=41, help="runs of each start-up hook measurement")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("PPAN_NO_AUTOLOAD", "NUMBA_CACHE_DIR")}
    hook = {"on": [], "off": []}
    for i in range(args.runs):
        for key in ("on", "off") if i % 2 else ("off", "on"):
            hook[key].append(run(["-c", "import PIL.Image"], env | ({"PPAN_NO_AUTOLOAD": "1"} if key == "off" else {}))[0])
    on, off = (statistics.median(hook[k]) * 1e3 for k in ("on", "off"))
    print(f"import PIL.Image: {on:.1f} ms CPU with the hook, {off:.1f} ms without: {on - off:+.1f} ms "
          f"(median of {args.runs})\n")
    print("| first decode in a new process, CPU s (wall s) | empty cache | cache filled | after warmup |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for name, path in files(Path(folder)).items():
            cold_cache, warmed_cache = Path(folder) / f"cold-{path.stem}", Path(folder) / f"warm-{path.stem}"
            decode = ["-c", DECODE.format(path=str(path))]
            cold = run(decode, env | {"NUMBA_CACHE_DIR": str(cold_cache)})
            again = median_run(decode, env | {"NUMBA_CACHE_DIR": str(cold_cache)})
            run(["-m", "peterpan_format.warmup"], env | {"NUMBA_CACHE_DIR": str(warmed_cache)})
            warm = median_run(decode, env | {"NUMBA_CACHE_DIR": str(warmed_cache)})
            print(f"| {name} | " + " | ".join(f"{cpu:.2f} ({wall:.2f})" for cpu, wall in (cold, again, warm)) + " |")


if __name__ == "__main__":
    main()
