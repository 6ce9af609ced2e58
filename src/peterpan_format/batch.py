"""Batch conversion: plan one job per file, run them in a process pool or on a Dask cluster.

A job is a plain picklable description (source, target, mask); :func:`run_job` does it in
whatever process it lands in. Outputs are written atomically, so an interrupted batch
leaves only complete files, and a rerun skips the outputs that are already up to date.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from PIL import Image

ENCODE, DECODE = "encode", "decode"
DONE, SKIPPED, FAILED = "done", "skipped", "failed"
DECODE_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
_SUFFIXES = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}


@dataclass(frozen=True)
class Job:
    kind: str  # ENCODE or DECODE
    source: str
    target: str
    mask: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    job: Job
    status: str
    input_bytes: int = 0
    output_bytes: int = 0
    seconds: float = 0.0
    error: str | None = None


def collect(inputs: Iterable[str | os.PathLike], suffixes: set[str]) -> Iterator[tuple[Path, Path]]:
    """(file, the folder it was found under) for files given or found recursively in folders."""
    for given in map(Path, inputs):
        if given.is_dir():
            for path in sorted(given.rglob("*")):
                if path.is_file() and path.suffix.lower() in suffixes:
                    yield path, given
        else:
            yield given, given.parent


def plan(kind: str, inputs: Iterable[str], outdir: str | None, params: dict[str, Any],
         mask: str | None = None, masks_dir: str | None = None, suffix: str = ".ppan",
         force: bool = False) -> tuple[list[Job], list[Result]]:
    """Jobs to run, and results for inputs skipped before running (up to date, or clashing)."""
    readable = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    suffixes = {".ppan"} if kind == DECODE else readable - {".ppan"}
    jobs, skipped, targets = [], [], set()
    for source, root in collect(inputs, suffixes):
        folder = Path(outdir) / source.parent.relative_to(root) if outdir else source.parent
        target = folder / (source.stem + suffix)
        job = Job(kind, str(source), str(target), _mask_for(source, mask, masks_dir), params)
        if target in targets:
            skipped.append(Result(job, FAILED, error=f"another input also writes {target}"))
        elif target.exists() and not force:
            fresh = target.stat().st_mtime >= source.stat().st_mtime
            skipped.append(Result(job, SKIPPED, error=None if fresh else "exists (use --force)"))
        else:
            jobs.append(job)
        targets.add(target)
    return jobs, skipped


def _mask_for(source: Path, mask: str | None, masks_dir: str | None) -> str | None:
    if mask:
        return mask
    if masks_dir:
        matches = sorted(Path(masks_dir).glob(source.stem + ".*"))
        return str(matches[0]) if matches else None
    return None


def run_job(job: Job) -> Result:
    """Encode or decode one file; any failure becomes a FAILED result, never an exception."""
    from . import save

    start = time.perf_counter()
    try:
        Path(job.target).parent.mkdir(parents=True, exist_ok=True)
        with Image.open(job.source) as image:
            image.load()
            if job.kind == ENCODE:
                params = dict(job.params)
                if job.mask:
                    with Image.open(job.mask) as mask:
                        params["mask"] = mask.convert("L")
                save(_encodable(image), job.target, **params)
            else:
                fmt = DECODE_FORMATS[job.params.get("format", "png")]
                if fmt == "JPEG" and image.mode not in ("L", "RGB"):
                    image = image.convert("RGB")
                save(image, job.target, format=fmt)
    except Exception as exc:  # one bad file must not stop the batch
        return Result(job, FAILED, seconds=time.perf_counter() - start, error=f"{type(exc).__name__}: {exc}")
    return Result(job, DONE, os.path.getsize(job.source), os.path.getsize(job.target), time.perf_counter() - start)


def _encodable(image: Image.Image) -> Image.Image:
    if image.mode in ("L", "RGB", "RGBA", "1", "P", "PA", "LA"):
        return image
    converted = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    converted.info = image.info
    return converted


def decode_suffix(fmt: str) -> str:
    return _SUFFIXES[fmt]


def run(jobs: list[Job], workers: int = 1, client: Any = None,
        progress: Callable[[Result], None] = lambda result: None) -> list[Result]:
    """Run the jobs in this process, a process pool (workers > 1) or on a Dask ``client``."""
    if client is not None:
        return _run_dask(jobs, client, progress)
    if workers <= 1 or len(jobs) <= 1:
        results = []
        for job in jobs:
            results.append(run_job(job))
            progress(results[-1])
        return results
    return _run_pool(jobs, workers, progress)


def _share_cores(threads: int) -> None:
    """Pool initializer: each worker's torch/BLAS gets its share of the cores, not all of them."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)


def _run_pool(jobs: list[Job], workers: int, progress: Callable[[Result], None]) -> list[Result]:
    results = []
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=workers, initializer=_share_cores, initargs=(threads,)) as pool:
        pending = {pool.submit(run_job, job) for job in jobs}
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    results.append(future.result())
                    progress(results[-1])
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return results


def _run_dask(jobs: list[Job], client: Any, progress: Callable[[Result], None]) -> list[Result]:
    from distributed import as_completed

    results = []
    for future in as_completed(client.map(run_job, jobs, pure=False)):
        results.append(future.result())
        progress(results[-1])
    return results


def batch(inputs: Iterable[str], outdir: str | None = None, client: Any = None, workers: int = 1,
          force: bool = False, masks_dir: str | None = None, **params) -> list[Result]:
    """Encode images (files or folders) to .ppan; the Python API of ``ppan encode``.

    ``client`` is a ``distributed.Client`` to run on a Dask cluster; ``params`` are save options.
    """
    jobs, skipped = plan(ENCODE, inputs, outdir, params, masks_dir=masks_dir, force=force)
    return skipped + run(jobs, workers=workers, client=client)
