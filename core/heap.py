"""Give freed heap memory back to the operating system, where the C library can (a leaf module).

Loading a fleet's store and priming its calibration allocate and free hundreds of megabytes in blocks
of tens of kilobytes (decoded bands, priming columns). glibc keeps such freed blocks in its heap, so
the process's resident size stays at the peak although Python holds far less. ``malloc_trim(0)``
returns those pages (Dask's workers do the same for the same reason); on a C library without it
(musl, macOS) :func:`trim` does nothing.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

__all__ = ["trim"]

_LIBC: Any = None


def trim() -> bool:
    """Return freed heap pages to the system; True if the C library released any."""
    global _LIBC
    if not sys.platform.startswith("linux"):
        return False
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
        except OSError:
            _LIBC = False
    fn = getattr(_LIBC, "malloc_trim", None) if _LIBC else None
    return bool(fn(0)) if fn is not None else False
