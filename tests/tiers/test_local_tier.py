"""The local tier takes over a file already made durable (an acknowledged DIMSE inbox entry) without
syncing its bytes a second time; only its new name is made durable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dicomweb.backends import tiers


def test_a_durable_source_is_taken_over_without_syncing_its_bytes_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tier = tiers.LocalTier("local", (tmp_path / "tier").as_uri())
    synced: list[bool] = []  # per fsync: whether it was a directory's
    real = os.fsync

    def recording(fd: int) -> None:
        synced.append(os.path.isdir(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(tiers.os, "fsync", recording)
    for name, store in (("plain", tier.store_file), ("durable", tier.store_durable_file)):
        source = tmp_path / "tier" / ".staging" / f"{name}.part"
        source.write_bytes(name.encode() * 1000)
        synced.clear()
        store(source, f"study/series/{name}.dcm")
        assert (tmp_path / "tier" / "study" / "series" / f"{name}.dcm").read_bytes() == name.encode() * 1000
        assert not source.exists()
        # The file's bytes, then its name; for a durable source only its name.
        assert synced == ([False, True] if name == "plain" else [True])
