"""Batch conversion: plan one job per file, run them in a process pool or on a Dask cluster.

A job is a plain picklable description (source, target, mask, what the output is made
with); :func:`run_job` does it in whatever process it lands in and writes the output and
its record with :mod:`.outputs`. An interrupted batch leaves only complete files; a rerun
skips the outputs that are up to date and redoes those made with other options, another
mask, another source or another version.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from PIL import Image

from . import outputs

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
    made_with: dict[str, Any] = field(default_factory=dict)  # recorded beside the output
    replaces: str | None = None  # SHA-256 of the file the output replaces


@dataclass(frozen=True)
class Result:
    job: Job
    status: str
    input_bytes: int = 0
    output_bytes: int = 0
    seconds: float = 0.0
    error: str | None = None
    no_subject: str | None = None  # an encode that found no subject: what it did (keep, background)


def input_suffixes(kind: str) -> set[str]:
    """The file name suffixes a folder is searched for: .ppan to decode, else what Pillow reads."""
    if kind == DECODE:
        return {".ppan"}
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN} - {".ppan"}


def collect(inputs: Iterable[str | os.PathLike], suffixes: set[str]) -> Iterator[tuple[Path, Path]]:
    """(file, the folder it was found under) for files given or found recursively in folders."""
    for given in map(Path, inputs):
        if given.is_dir():
            for path in sorted(given.rglob("*")):
                if path.is_file() and path.suffix.lower() in suffixes:
                    yield path, given
        else:
            yield given, given.parent


def output_roots(inputs: Iterable[str | os.PathLike], outdir: str | os.PathLike | None) -> list[Path]:
    """The folders whose lock a run takes: ``outdir``, or else each input folder (the
    folder of each input file)."""
    if outdir is not None:
        return [Path(outdir)]
    return [path if path.is_dir() else path.parent for path in map(Path, inputs)]


def plan(kind: str, sources: Iterable[tuple[Path, Path]], outdir: str | os.PathLike | None,
         params: dict[str, Any], mask: str | None = None, masks_dir: str | os.PathLike | None = None,
         suffix: str = ".ppan", force: bool = False) -> tuple[list[Job], list[Result]]:
    """Jobs to run, and results for the sources settled without running: up to date
    (skipped), or failed (a clashing target, a missing mask, a file ppan did not write).

    ``sources`` come from :func:`collect`. An output mirrors its source's place under the
    folder it was found in, under ``outdir`` (default: beside the source); so does its mask
    under ``masks_dir``, with the same name and any image suffix. Run it holding the lock of
    :func:`output_roots`: it deletes what killed runs left there.
    """
    find_mask = _mask_finder(Path(masks_dir)) if masks_dir is not None else None
    jobs, settled, targets = [], [], set()
    for source, root in sources:
        relative = source.relative_to(root)
        target = (Path(outdir) / relative.parent if outdir is not None else source.parent) / (source.stem + suffix)
        job = Job(kind, str(source), str(target), mask, params)
        try:
            if target in targets:
                raise ValueError(f"another input also writes {target}")
            targets.add(target)
            if find_mask:
                job = replace(job, mask=find_mask(relative))
            job = replace(job, made_with=outputs.made_with(kind, source, params, job.mask))
            why_not, existing = outputs.check(target, job.made_with, force)
        except (OSError, ValueError) as exc:
            settled.append(Result(job, FAILED, error=str(exc)))
            continue
        if why_not is None:
            jobs.append(replace(job, replaces=existing))
        else:
            settled.append(Result(job, SKIPPED if why_not == outputs.UP_TO_DATE else FAILED,
                                  error=None if why_not == outputs.UP_TO_DATE else why_not))
    outputs.remove_stale_temporaries(targets)
    return jobs, settled


def _mask_finder(masks_dir: Path) -> Callable[[Path], str]:
    """``find(relative path of a source) -> its mask``: the one file in the same place
    under ``masks_dir`` with the same stem and an image suffix, or an error."""
    suffixes = input_suffixes(ENCODE)

    @lru_cache(maxsize=None)
    def masks_in(folder: Path) -> dict[str, list[Path]]:
        found: dict[str, list[Path]] = {}
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.is_file() and path.suffix.lower() in suffixes:
                    found.setdefault(path.stem, []).append(path)
        return found

    def find(relative: Path) -> str:
        folder = masks_dir / relative.parent
        matches = masks_in(folder).get(relative.stem, [])
        if not matches:
            raise FileNotFoundError(f"no mask {relative.stem}.<image suffix> in {folder}")
        if len(matches) > 1:
            raise ValueError(f"{len(matches)} masks for it in {folder}: {', '.join(p.name for p in matches)}")
        return str(matches[0])

    return find


def run_job(job: Job) -> Result:
    """Encode or decode one file; any failure becomes a FAILED result, never an exception."""
    start = time.perf_counter()
    try:
        data = _convert(job)
        outputs.write_output(Path(job.target), data, job.made_with, job.replaces)
    except Exception as exc:  # one bad file must not stop the batch
        return Result(job, FAILED, seconds=time.perf_counter() - start, error=f"{type(exc).__name__}: {exc}")
    return Result(job, DONE, os.path.getsize(job.source), len(data), time.perf_counter() - start,
                  no_subject=_no_subject(data) if job.kind == ENCODE else None)


def _convert(job: Job) -> bytes:
    """The bytes of the job's output."""
    out = io.BytesIO()
    with Image.open(job.source) as image:
        if job.kind == ENCODE:
            params = dict(job.params)
            if job.mask:
                params["mask"] = _read_mask(job.mask, image)
            _encodable(image).save(out, format="PPAN", **params)
        else:
            fmt = DECODE_FORMATS[job.params.get("format", "png")]
            if fmt == "JPEG" and image.mode not in ("L", "RGB"):
                image = image.convert("RGB")
            image.save(out, format=fmt)
    return out.getvalue()


def _no_subject(ppan: bytes) -> str | None:
    """What the encoder did for lack of a subject (``info["no_subject"]``), or None."""
    with Image.open(io.BytesIO(ppan)) as image:
        return image.info.get("no_subject")


def _read_mask(path: str, image: Image.Image):
    """The mask at ``path`` as a uint8 array, checked as the API checks a mask."""
    from .masking import resolve_mask

    with Image.open(path) as mask:
        try:
            return resolve_mask(image, mask)[0]
        except ValueError as exc:
            raise ValueError(f"mask {path}: {exc}") from None


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


def _start_worker(threads: int) -> None:
    """Pool initializer. Each worker's torch/BLAS and decoding threads get its share of the
    cores; Ctrl-C goes to the parent alone (which lets running jobs finish); libraries'
    chatter on stdout is dropped; and the worker exits as soon as its parent is gone, even
    killed."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[name] = str(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdout = open(os.devnull, "w")
    threading.Thread(target=_exit_with_parent, daemon=True).start()


def _exit_with_parent() -> None:
    multiprocessing.parent_process().join()  # returns when the parent process is gone
    os._exit(1)


def _run_pool(jobs: list[Job], workers: int, progress: Callable[[Result], None]) -> list[Result]:
    results = []
    threads = max(1, (os.cpu_count() or 1) // workers)
    # spawn: a worker inherits no lock, thread or open file of the parent
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start_worker, initargs=(threads,)) as pool:
        pending = {pool.submit(run_job, job) for job in jobs}
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    results.append(future.result())
                    progress(results[-1])
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return results


def _run_dask(jobs: list[Job], client: Any, progress: Callable[[Result], None]) -> list[Result]:
    from distributed import as_completed

    results = []
    for future in as_completed(client.map(run_job, jobs, pure=False)):
        results.append(future.result())
        progress(results[-1])
    return results


def batch(inputs: Iterable[str | os.PathLike], outdir: str | os.PathLike | None = None, client: Any = None,
          workers: int = 1, force: bool = False, masks_dir: str | os.PathLike | None = None,
          **params) -> list[Result]:
    """Encode images (files or folders) to .ppan; the Python API of ``ppan encode``.

    ``client`` is a ``distributed.Client`` to run on a Dask cluster; ``params`` are save
    options. Raises ``outputs.FolderBusy`` if another run writes into the same folder.
    """
    inputs = list(inputs)
    with outputs.locked(output_roots(inputs, outdir)):
        jobs, settled = plan(ENCODE, collect(inputs, input_suffixes(ENCODE)), outdir, params,
                             masks_dir=masks_dir, force=force)
        return settled + run(jobs, workers=workers, client=client)
