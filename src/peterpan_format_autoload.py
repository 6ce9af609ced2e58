"""Start-up hook (run from a .pth file): registers the .ppan plugin when PIL.Image is imported.

It costs one entry in ``sys.meta_path`` until PIL.Image is imported, and nothing else:
neither Pillow nor peterpan_format is imported before a program asks for PIL.Image.
Set ``PPAN_NO_AUTOLOAD=1`` to turn it off.
"""

import os
import sys
from importlib.machinery import PathFinder


def _register():
    try:
        import peterpan_format.PpanImagePlugin  # noqa: F401  (registers on import)
    except Exception as exc:  # a broken plugin must never break Pillow
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
