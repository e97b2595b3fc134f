"""``TREADLE_PURE=1``: run the pure-Python source even where the compiled
build is installed.

The compiled build installs each compiled module's ``.py`` source next to
its extension module; Python's import system prefers the extension.  With
``TREADLE_PURE`` set (to anything but ``0``), a finder placed first on
``sys.meta_path`` resolves ``treadle.*`` modules to their source files, so
one installation can be measured or debugged both ways.  It must run
before any compiled treadle module is imported, which is why
``treadle/__init__.py`` calls it first.
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import SOURCE_SUFFIXES, FileFinder, ModuleSpec, SourceFileLoader
from typing import Sequence


def requested() -> bool:
    return os.environ.get("TREADLE_PURE", "") not in ("", "0")


class SourceOnlyFinder:
    """Finds ``treadle.*`` submodules as source files only."""

    @classmethod
    def find_spec(cls, fullname: str, path: Sequence[str] | None = None,
                  target: object = None) -> ModuleSpec | None:
        if not fullname.startswith("treadle.") or not path:
            return None
        for entry in path:
            finder = FileFinder(entry, (SourceFileLoader, SOURCE_SUFFIXES))
            spec = finder.find_spec(fullname)
            if spec is not None:
                return spec
        return None


def prefer_source() -> None:
    if not any(f is SourceOnlyFinder for f in sys.meta_path):
        sys.meta_path.insert(0, SourceOnlyFinder)
