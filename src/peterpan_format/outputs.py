"""Where batch outputs go: written whole or not at all, with a record of what each was made
with, and a lock so that one run at a time writes into an output folder.

Each output folder holds a hidden ``.ppan-batch/`` folder: ``NAME.json`` records what the
output ``NAME`` was made with (tool version, options, source and mask identity) and the
SHA-256 of its bytes; ``lock`` is the lock file of a run whose outputs go under that folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any, Iterable, Iterator

try:
    import fcntl

    def _try_lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except ImportError:  # Windows
    import msvcrt

    def _try_lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

HIDDEN = ".ppan-batch"
UP_TO_DATE = "up to date"
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[A-Za-z0-9_]+\.tmp")


class FolderBusy(OSError):
    """Another run holds the lock of an output folder."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fp:
        for block in iter(lambda: fp.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (through ``.NAME.XXXXXXXX.tmp``), with a
    new file's usual permissions (0666 less the umask, as Pillow's own ``save`` gives)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with open(fd, "wb") as fp:
            fp.write(data)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def remove_stale_temporaries(paths: Iterable[Path]) -> None:
    """Delete the ``.NAME.XXXXXXXX.tmp`` files that a killed run left for any of ``paths``
    (and for their records). Call it only while holding the folders' lock."""
    names: dict[Path, set[str]] = {}
    for path in paths:
        names.setdefault(path.parent, set()).add(path.name)
        names.setdefault(_record_path(path).parent, set()).add(_record_path(path).name)
    for folder, wanted in names.items():
        with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
            for entry in entries:
                match = _TEMPORARY.fullmatch(entry.name)
                if match and match["name"] in wanted and entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)


def made_with(kind: str, source: Path, params: dict[str, Any], mask: str | None) -> dict[str, Any]:
    """What an output depends on: the tool's version, the job, the source's size and
    modification time, the mask's SHA-256, the options and, for a segmenter given as a
    path, that file's (or folder's files') size and modification time."""
    from . import __version__

    made = {"tool": f"peterpan-format {__version__}", "kind": kind,
            "source": [os.path.abspath(source), *_stamp(source)],
            "mask": mask and [os.path.abspath(mask), file_sha256(mask)],
            "options": params}
    segmenter = params.get("segmenter")
    if isinstance(segmenter, (str, os.PathLike)) and os.path.exists(segmenter):
        files = sorted(Path(segmenter).rglob("*")) if os.path.isdir(segmenter) else [Path(segmenter)]
        made["segmenter"] = [[str(f), *_stamp(f)] for f in files if f.is_file()]
    return json.loads(json.dumps(made, default=repr))  # as it reads back from the record


def _stamp(path: str | os.PathLike) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def check(target: Path, made: dict[str, Any], force: bool) -> tuple[str | None, str | None]:
    """(why not to write ``target``, SHA-256 of the file now there, if any).

    Why not: None to write it (no file yet; ``force``; or ppan made it, with something else
    or unfinished), ``UP_TO_DATE``, or a refusal: a file ppan did not write, or changed since.
    """
    if not target.exists():
        return None, None
    existing = file_sha256(target)
    if force:
        return None, existing
    try:
        record = json.loads(_record_path(target).read_text())
    except (OSError, ValueError):
        return "exists, and ppan has no record of writing it (use --force to overwrite)", existing
    if existing not in (record.get("output_sha256"), record.get("replaces_sha256")):
        return "exists, and was changed since ppan wrote it (use --force to overwrite)", existing
    if existing == record.get("output_sha256") and record.get("made_with") == made:
        return UP_TO_DATE, existing
    return None, existing


def write_output(target: Path, data: bytes, made: dict[str, Any], replaces: str | None) -> None:
    """Write the output and its record. The record goes first, naming the file it replaces:
    a run killed between the two leaves a file that the next run knows it may redo."""
    record = {"made_with": made, "output_sha256": sha256(data), "replaces_sha256": replaces}
    _record_path(target).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(_record_path(target), json.dumps(record, indent=1).encode())
    write_atomic(target, data)


def _record_path(target: Path) -> Path:
    return target.parent / HIDDEN / f"{target.name}.json"


@contextlib.contextmanager
def locked(folders: Iterable[Path]) -> Iterator[None]:
    """Hold the lock of each folder (created if missing) for the duration; ``FolderBusy``
    if another run holds one. The locks go with the process, even if it is killed."""
    with contextlib.ExitStack() as stack:
        for folder in sorted(set(map(Path, folders))):
            (folder / HIDDEN).mkdir(parents=True, exist_ok=True)
            fd = os.open(folder / HIDDEN / "lock", os.O_RDWR | os.O_CREAT, 0o666)
            stack.callback(os.close, fd)
            try:
                _try_lock(fd)
            except OSError:
                raise FolderBusy(f"{folder} is in use by another ppan run; wait for it to finish "
                                 "or write elsewhere") from None
        yield
