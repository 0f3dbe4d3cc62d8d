"""sqlite-vec inside the SQLite library that Python's sqlite3 module (so aiosqlite, so the engine) uses.

Python's sqlite3 is often built without `enable_load_extension` (pyenv's default, python.org's
macOS build), although the SQLite library under it can load extensions. So sqlite-vec is
registered in that library with `sqlite3_auto_extension`, and every connection opened after
it, the engine's own included, has sqlite-vec's functions: SQLite then ranks chunks by their
embeddings itself (`vec_distance_cosine` takes the float32 bytes chunks.embedding holds).

A second SQLite library (pysqlite3) reading the same file from this process would not do:
POSIX locks belong to the process, so neither library sees the other's locks, and one can
checkpoint a WAL the other is still reading (sqlite.org/howtocorrupt.html, "multiple copies
of SQLite linked into the same application").
"""

from __future__ import annotations

import _sqlite3
import ctypes
import functools
import glob

import sqlite_vec

ENTRY_POINT = "sqlite3_vec_init"


@functools.cache
def register() -> str | None:
    """Registers sqlite-vec in Python's SQLite library, once: None when it is, else why it is not.

    An auto-extension reaches only connections opened after it, hence this runs when this
    module is imported, before any database is opened."""
    try:
        library = ctypes.CDLL(_sqlite3.__file__)  # its symbols include those of the SQLite it links
        option_used = library.sqlite3_compileoption_used
        auto_extension = library.sqlite3_auto_extension
    except (OSError, AttributeError):
        return "Python's SQLite library does not export its C API"
    option_used.argtypes = [ctypes.c_char_p]
    # Without extension loading, an auto-extension would get no API to call (and crash).
    if option_used(b"OMIT_LOAD_EXTENSION"):
        return "Python's SQLite library was built without extension loading"
    found = sorted(glob.glob(sqlite_vec.loadable_path() + ".*"))
    if not found:
        return "sqlite-vec's loadable library is missing"
    try:
        entry_point = getattr(ctypes.CDLL(found[0]), ENTRY_POINT)
    except (OSError, AttributeError) as error:
        return f"sqlite-vec could not be loaded ({error})"
    auto_extension.argtypes = [ctypes.c_void_p]
    if auto_extension(ctypes.cast(entry_point, ctypes.c_void_p)) != 0:
        return "SQLite refused sqlite-vec as an auto-extension"
    return None


register()
