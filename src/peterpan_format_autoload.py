"""Start-up hook (run from a .pth file): every Pillow program reads and writes .ppan.

Until a program imports PIL.Image it costs one entry in ``sys.meta_path``. Then it
registers a stand-in for the format: the signature test, the extension, the MIME type and
open/save functions that import the real plugin (``peterpan_format``, NumPy, Numba) only
when a .ppan file is actually opened or saved; the plugin then replaces the stand-in.
Set ``PPAN_NO_AUTOLOAD=1`` to turn it off.
"""

import os
import sys
from importlib.machinery import PathFinder

FORMAT = "PPAN"
SIGNATURE = b"\x89PAN\r\n\x1a\n"  # spec/FORMAT.md §2


def _plugin():
    from peterpan_format import PpanImagePlugin  # registers the real plugin over this stand-in

    return PpanImagePlugin


def _accept(prefix):
    return prefix[:8] == SIGNATURE


def _open(fp, filename=None):
    return _plugin().PpanImageFile(fp, filename)


def _save(im, fp, filename):
    _plugin()._save(im, fp, filename)


def _save_all(im, fp, filename):
    _plugin()._save_all(im, fp, filename)


def _register():
    try:
        from PIL import Image

        if FORMAT in Image.OPEN:  # the real plugin is already there
            return
        Image.register_open(FORMAT, _open, _accept)
        Image.register_save(FORMAT, _save)
        Image.register_save_all(FORMAT, _save_all)
        Image.register_extension(FORMAT, ".ppan")
        Image.register_mime(FORMAT, "image/x-ppan")
    except Exception as exc:  # a broken hook must never break Pillow
        import warnings

        warnings.warn(f"peterpan-format: .ppan support not registered: {exc!r}")


class _PillowImportHook:
    """Meta-path finder that runs _register() right after PIL.Image has executed."""

    def find_spec(self, name, path, target=None):
        if name != "PIL.Image":
            return None
        sys.meta_path.remove(self)
        spec = PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            _register()

        spec.loader.exec_module = exec_then_register
        return spec


def install():
    """Register now if Pillow is loaded, else as soon as PIL.Image is imported."""
    if os.environ.get("PPAN_NO_AUTOLOAD"):
        return
    if "PIL.Image" in sys.modules:
        _register()
    elif not any(isinstance(f, _PillowImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _PillowImportHook())
