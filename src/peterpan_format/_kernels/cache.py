"""Where the kernels' Numba cache lives: a per-user cache folder, never the installed package.

By default Numba caches compiled kernels in ``__pycache__`` beside their sources: a
read-only install cannot write there, and ``pip uninstall`` leaves the files behind (they
are not in pip's RECORD). :func:`install` puts a cache locator in front of Numba's own for
the modules of this folder only, so their cache goes to the first of these that works:

1. ``$NUMBA_CACHE_DIR``, when set and writable (Numba's own setting, for all its caches);
2. the user's cache folder: ``$XDG_CACHE_HOME/peterpan-format/numba`` (default
   ``~/.cache/peterpan-format/numba``; ``~/Library/Caches/…`` on macOS,
   ``%LOCALAPPDATA%\\peterpan-format\\numba`` on Windows);
3. ``<temp>/peterpan-format-<uid>/numba`` for each temp folder (``tempfile.gettempdir()``,
   then ``/dev/shm``), used only if the folders are the user's own and private (a shared
   temp folder must not let another user plant compiled code);
4. a new private temporary folder, removed at exit (kernels then compile in each process).

``python -m peterpan_format.warmup`` fills the cache ahead of time (e.g. when a container
image is built).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import sys
import tempfile
from pathlib import Path

from numba.core import caching

APP = "peterpan-format"
_KERNELS = Path(__file__).resolve().parent
#: tried after the temp folder: writable in read-only containers (Docker's --read-only)
SHARED_MEMORY = ("/dev/shm",)


def user_cache_root() -> Path | None:
    """The platform's per-user cache folder (absolute), or None if there is none."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA", "")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Caches")
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = xdg if os.path.isabs(xdg) else os.path.expanduser("~/.cache")  # XDG: relative = unset
    return Path(base) if os.path.isabs(base) else None  # no home: "~" stays unexpanded


def _temp_roots() -> list[Path]:
    roots = []
    try:
        roots.append(Path(tempfile.gettempdir()))
    except OSError:  # no writable temp folder at all (e.g. a read-only container)
        pass
    return roots + [Path(p) for p in SHARED_MEMORY if os.path.isdir(p)]


def _private(path: Path) -> bool:
    """True if ``path`` is a folder of this user that no one else can write to."""
    if not hasattr(os, "getuid"):
        return True  # Windows: temp folders are per user
    st = path.stat()
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


def _usable(path: Path, private: bool = False) -> bool:
    """Create ``path`` (0700) if needed and check that a file can be written in it; if
    ``private``, also that it and its parent are this user's and no one else's."""
    try:
        for folder in (path.parent, path):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if private and not _private(folder):
                return False
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


@functools.cache
def cache_dir() -> Path | None:
    """The folder that holds this package's compiled kernels (chosen once per process)."""
    user = user_cache_root()
    if user is not None and _usable(user / APP / "numba"):
        return user / APP / "numba"
    user_id = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    for root in _temp_roots():
        if _usable(root / f"{APP}-{user_id}" / "numba", private=True):
            return root / f"{APP}-{user_id}" / "numba"
    for root in _temp_roots():
        try:
            fresh = Path(tempfile.mkdtemp(prefix=f"{APP}-numba-", dir=root))
        except OSError:
            continue
        atexit.register(shutil.rmtree, fresh, ignore_errors=True)
        return fresh
    return None


class KernelCacheLocator(caching._SourceFileBackedLocatorMixin, caching._CacheLocator):
    """Numba cache locator for the kernels of this folder: :func:`cache_dir`."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = str(cache_dir() / self.get_suitable_cache_subpath(py_file))

    def get_cache_path(self) -> str:
        return self._cache_path

    @classmethod
    def from_function(cls, py_func, py_file):
        if Path(py_file).resolve().parent != _KERNELS or cache_dir() is None:
            return None
        return super().from_function(py_func, py_file)


def install() -> None:
    """Put :class:`KernelCacheLocator` right after Numba's ``NUMBA_CACHE_DIR`` locator
    (idempotent). It must run before the kernels' modules are imported."""
    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl  # _CacheImpl in older Numba
    if KernelCacheLocator not in impl._locator_classes:
        impl._locator_classes.insert(1, KernelCacheLocator)
