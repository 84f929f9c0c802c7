"""The auto codec choice: smallest within the read bounds (issue 8's goals), fastest when none fits."""

from __future__ import annotations

import pytest

from dicomweb.backends.container.trial import Candidate, pick

FRAME = 512 * 512 * 2  # bytes of one 512x512 16-bit frame; the bounds are the defaults, 100 MB/s and 20 ms


def at(mbps: float) -> float:
    """CPU seconds per frame that decode FRAME bytes at ``mbps``."""
    return FRAME / 1e6 / mbps


def test_smallest_of_those_fast_enough() -> None:
    small_slow = Candidate("jpegxl", 900, at(40), at(40))
    mid_fast = Candidate("jpegls", 1000, at(120), at(120))
    big_fast = Candidate("htj2k", 1100, at(400), at(400))
    assert pick([small_slow, mid_fast, big_fast], FRAME).name == "jpegls"


def test_interslice_with_a_slow_chain_loses_to_its_base() -> None:
    base = Candidate("jpegls", 1000, at(150), at(150))
    # One random frame decodes a chain of four: 4 x 3.5 ms fits the 20 ms bound, 4 x 7 ms does not.
    inter_ok = Candidate("interslice:jpegls", 800, at(150), 4 * at(150))
    assert pick([base, inter_ok], FRAME).name == "interslice:jpegls"
    inter_slow = Candidate("interslice:jpegls", 800, at(150), 4 * at(75))
    assert pick([base, inter_slow], FRAME).name == "jpegls"


def test_fastest_when_nothing_fits() -> None:
    tiny_slow = Candidate("jpegxl", 500, at(20), at(20))
    less_slow = Candidate("ffv1", 700, at(60), at(60))
    assert pick([tiny_slow, less_slow], FRAME).name == "ffv1"


def test_ties_are_stable_by_name() -> None:
    a = Candidate("b-codec", 1000, at(200), at(200))
    b = Candidate("a-codec", 1000, at(300), at(300))
    assert pick([a, b], FRAME).name == "a-codec"


def test_no_candidates_is_an_error() -> None:
    with pytest.raises(ValueError):
        pick([], FRAME)
