"""One in-process archive per test module, loaded with one file per distinct SOP Instance UID of the
shared data (every transfer syntax there), served through starlette's TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from dicomweb.app import create_app
from dicomweb.archive import Archive
from dicomweb.settings import load_settings
from tests.conftest import data_index, data_path


def chosen_entries() -> list[dict[str, Any]]:
    """The first valid file of each SOP Instance UID (a second encoding would be a conflict)."""
    seen: set[str] = set()
    out = []
    for entry in data_index():
        if not entry.get("valid") or entry["sop_instance_uid"] in seen:
            continue
        seen.add(entry["sop_instance_uid"])
        out.append(entry)
    return out


@dataclass
class Loaded:
    client: TestClient
    archive: Archive
    entries: list[dict[str, Any]]  # the stored ones

    @property
    def base(self) -> str:
        return "http://testserver/dicom-web"

    def url(self, entry: dict[str, Any]) -> str:
        return (f"{self.base}/studies/{entry['study_uid']}/series/{entry['series_uid']}"
                f"/instances/{entry['sop_instance_uid']}")

    def by_syntax(self) -> dict[str, dict[str, Any]]:
        """One stored image per transfer syntax, the smallest (fast tests)."""
        out: dict[str, dict[str, Any]] = {}
        for entry in sorted(self.entries, key=lambda e: e["bytes"]):
            if entry.get("rows") and entry.get("frames"):
                out.setdefault(entry["transfer_syntax"], entry)
        return out


def load(tmp: Path, entries: list[dict[str, Any]], **settings: Any) -> Iterator[Loaded]:
    config = load_settings(data_dir=tmp, database_url=f"sqlite:///{tmp / 'index.sqlite'}", fsync=False, **settings)
    archive = Archive.open(config, ingest_processes=0)
    stored = []
    for entry in entries:
        result = archive.ingest.store(archive.stage_file(data_path(entry)))
        if result.outcome in ("stored", "duplicate"):
            stored.append(entry)
    with TestClient(create_app(config, archive)) as client:
        yield Loaded(client, archive, stored)
    archive.close()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Loaded]:
    yield from load(tmp_path_factory.mktemp("wado"), chosen_entries())


def one_per_syntax() -> list[dict[str, Any]]:
    """The smallest image file of each transfer syntax in the shared data."""
    out: dict[str, dict[str, Any]] = {}
    for entry in sorted(data_index(), key=lambda e: e.get("bytes", 0)):
        if entry.get("valid") and entry.get("rows") and entry.get("frames"):
            out.setdefault(entry["transfer_syntax"], entry)
    return list(out.values())


@pytest.fixture(scope="module")
def syntaxes(
    tmp_path_factory: pytest.TempPathFactory, shared_data: Path
) -> Iterator[list[tuple[Loaded, dict[str, Any]]]]:
    """Every transfer syntax stored, each in an archive of its own (encodings of one image share a UID)."""
    gens, out = [], []
    for entry in one_per_syntax():
        gen = load(tmp_path_factory.mktemp("syntax"), [entry])
        loaded = next(gen)
        gens.append(gen)
        out.append((loaded, entry))
    yield out
    for gen in gens:
        for _ in gen:
            pass
