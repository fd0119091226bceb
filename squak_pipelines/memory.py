"""Giving freed memory back to the operating system between chunks of large work.

CPython returns small objects to its own arenas and large ones to the C allocator; glibc's
malloc keeps much of what a chunk freed in its heaps for reuse, so a long stage working a
chunk at a time grows as if it held every chunk (the invoicing process grew by about 0.7 GiB
over the 10M month's chunks). `malloc_trim(0)` hands the free pages back; it costs a few
milliseconds and is a no-op where the C library has no such call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache


@cache
def _trim():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


def release_freed_memory() -> bool:
    """Return the C allocator's free pages to the system; True when the allocator could trim.
    (No garbage collection: a full pass over a stage's millions of objects costs more than
    the few cycles it would free.)"""
    trim = _trim()
    if trim is None:
        return False
    trim(0)
    return True
