"""Where compiled kernels are cached: a per-user folder, a private temp folder when there is
no writable home, never beside the installed sources (issue 16)."""

import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import peterpan_format
from peterpan_format._kernels import cache

PACKAGE = Path(peterpan_format.__file__).resolve().parent
NO_ENV = ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "TMPDIR", "TEMP", "TMP")


@pytest.fixture
def choose(monkeypatch, tmp_path):
    """cache_dir() chosen afresh under the given environment (temp root: tmp_path/tmp)."""
    for name in NO_ENV:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(cache, "SHARED_MEMORY", ())

    def run(**env):
        for name, value in env.items():
            monkeypatch.setenv(name, str(value))
        return cache.cache_dir.__wrapped__()

    return run


def _unusable(tmp_path):
    """A path nothing can be created under (its parent is a file), even as root."""
    (tmp_path / "file").write_bytes(b"")
    return tmp_path / "file" / "below"


def test_the_user_cache_folder_comes_first(choose, tmp_path):
    assert choose(XDG_CACHE_HOME=tmp_path / "xdg") == tmp_path / "xdg" / "peterpan-format" / "numba"
    assert choose(XDG_CACHE_HOME="relative", HOME=tmp_path / "home") == (
        tmp_path / "home" / ".cache" / "peterpan-format" / "numba")  # XDG paths must be absolute


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_no_writable_home_falls_back_to_a_private_temp_folder(choose, tmp_path):
    chosen = choose(XDG_CACHE_HOME=_unusable(tmp_path), HOME=_unusable(tmp_path))
    assert chosen == tmp_path / "tmp" / f"peterpan-format-{os.getuid()}" / "numba"
    assert stat.S_IMODE(chosen.stat().st_mode) == stat.S_IMODE(chosen.parent.stat().st_mode) == 0o700


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_a_temp_folder_others_can_write_is_never_used(choose, tmp_path):
    planted = tmp_path / "tmp" / f"peterpan-format-{os.getuid()}"
    planted.mkdir()
    planted.chmod(0o777)
    chosen = choose(XDG_CACHE_HOME=_unusable(tmp_path), HOME=_unusable(tmp_path))
    assert chosen.parent == tmp_path / "tmp" and chosen.name.startswith("peterpan-format-numba-")
    assert stat.S_IMODE(chosen.stat().st_mode) == 0o700
    assert not any(planted.iterdir())


def _compiled_files(root: Path, since: float) -> list[Path]:
    return [p for p in root.rglob("*") if p.suffix in (".nbi", ".nbc") and p.stat().st_mtime >= since]


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_a_read_only_install_without_home_still_compiles_and_caches(tmp_path):
    """A kernel compiled in a process with no usable home and no NUMBA_CACHE_DIR is cached in
    the private temp folder, and nothing is written beside the package's sources."""
    env = {k: v for k, v in os.environ.items() if k not in NO_ENV}
    env |= {"HOME": str(_unusable(tmp_path)), "XDG_CACHE_HOME": str(_unusable(tmp_path)),
            "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    code = ("import numpy as np; from peterpan_format._kernels import cache, count_set; "
            "print(count_set(np.ones((2, 3), np.uint8)), cache.cache_dir())")
    started = time.time() - 1
    for _ in range(2):  # compiled and saved, then loaded from the cache
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        folder = tmp_path / "tmp" / f"peterpan-format-{os.getuid()}" / "numba"
        assert out.stdout.split() == ["6", str(folder)]
    assert [p.suffix for p in sorted(_compiled_files(folder, started))] == [".nbc", ".nbi"]
    assert _compiled_files(PACKAGE, started) == []


def test_no_writable_temp_folder_falls_back_to_shared_memory(choose, tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "SHARED_MEMORY", (str(tmp_path / "shm"),))
    (tmp_path / "shm").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(_unusable(tmp_path)))
    chosen = choose(XDG_CACHE_HOME=_unusable(tmp_path), HOME=_unusable(tmp_path))
    assert chosen.parent.parent == tmp_path / "shm"


def test_numba_cache_dir_still_wins(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in NO_ENV} | {"NUMBA_CACHE_DIR": str(tmp_path)}
    code = "import numpy as np; from peterpan_format._kernels import count_set; count_set(np.ones((1, 1), np.uint8))"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    assert [p.suffix for p in sorted(_compiled_files(tmp_path, 0))] == [".nbc", ".nbi"]
