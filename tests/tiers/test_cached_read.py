"""Reads for the event loop: exact bytes when the kernel has them cached, a refusal (None) otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dicomweb.backends import cached_read
from dicomweb.backends.cached_read import read_cached

pytestmark = pytest.mark.skipif(not cached_read.supported(), reason="openat2/RWF_NOWAIT: Linux only")


def _file(tmp_path: Path, size: int = 300_000) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / "blob.dcm"
    path.write_bytes(data)
    return path, data


def test_a_cached_range_comes_back_exactly(tmp_path: Path) -> None:
    path, data = _file(tmp_path)
    path.read_bytes()  # in the page cache now
    assert read_cached(str(path), 0, len(data)) == data
    assert read_cached(str(path), 12_345, 100_000) == data[12_345:112_345]


def test_a_range_past_the_end_or_a_missing_file_is_refused(tmp_path: Path) -> None:
    path, data = _file(tmp_path)
    path.read_bytes()
    assert read_cached(str(path), len(data) - 10, 11) is None  # short: the thread path says what is wrong
    assert read_cached(str(tmp_path / "gone.dcm"), 0, 10) is None
    assert cached_read.supported()  # a missing file does not turn the fast path off


def test_pages_not_in_the_cache_are_refused_not_waited_for(tmp_path: Path) -> None:
    path, data = _file(tmp_path, 4 << 20)
    with open(path, "rb+") as fp:
        os.fsync(fp.fileno())  # clean pages can be dropped
        os.posix_fadvise(fp.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    refused = read_cached(str(path), 0, len(data))
    if refused is not None:
        pytest.skip("this filesystem kept the pages cached despite POSIX_FADV_DONTNEED")
    assert path.read_bytes() == data  # a blocking read brings them in
    assert read_cached(str(path), 0, len(data)) == data

