"""Reads that never wait for the disk: a byte range of a local file, given only when the kernel has it cached.

The event loop may not block, so every storage read normally goes to a worker thread; on a small machine that
hand-off (two thread wake-ups) costs more CPU than copying a 512 KiB frame out of the page cache. A viewer
scrolling a stack asks for frames read moments ago, so they are almost always cached. This module answers
such a read inline and refuses, rather than waits, when anything would touch the disk:

- the path is opened with ``openat2(RESOLVE_CACHED)``, which fails with EAGAIN unless every component of it
  is in the kernel's lookup cache (Linux 5.12+);
- the bytes are read with ``preadv2(RWF_NOWAIT)``, which reads only what is in the page cache (Linux 4.14+).

A refusal (``None``) sends the caller to its thread path. Elsewhere (another OS, an older kernel, a
filesystem without RWF_NOWAIT) every read is refused, once found unsupported.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import sys

_SYS_OPENAT2 = 437  # the unified syscall table's number: the same on x86_64 and aarch64
_AT_FDCWD = -100
_RESOLVE_CACHED = 0x20
_NOT_SUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.E2BIG, errno.EPERM}


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _syscall() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "aarch64") or not hasattr(os, "RWF_NOWAIT"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_long
    return function


_call = _syscall()
_HOW = _OpenHow(os.O_RDONLY | os.O_CLOEXEC, 0, _RESOLVE_CACHED)
_HOW_SIZE = ctypes.sizeof(_HOW)


def supported() -> bool:
    return _call is not None


def read_cached(path: str, offset: int, length: int) -> bytearray | None:
    """``length`` bytes of ``path`` from ``offset``, or None unless all of it could be read without waiting.

    None also for a missing file (the thread path reports that as it always has). A bytearray, not bytes:
    copying a frame once more would cost what this saves."""
    global _call
    call = _call
    if call is None:
        return None
    fd = call(_SYS_OPENAT2, _AT_FDCWD, os.fsencode(path), ctypes.byref(_HOW), _HOW_SIZE)
    if fd < 0:
        if ctypes.get_errno() in _NOT_SUPPORTED:
            _call = None
        return None
    try:
        buffer = bytearray(length)
        try:
            got = os.preadv(fd, [buffer], offset, os.RWF_NOWAIT)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno in _NOT_SUPPORTED:
                _call = None
            return None
    finally:
        os.close(fd)
    return buffer if got == length else None
