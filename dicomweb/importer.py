"""``dicomweb import``: folders, single files, DICOMDIR media and zip files, through the ingest service."""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from .archive import Archive
from .services.ingest import StoreResult
from .services.staging import StagedBlob, stage_stream

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"


@dataclass
class Source:
    """One candidate instance: where it came from, and how to stage its bytes."""

    label: str
    stage: Callable[[], StagedBlob]
    explicit: bool  # named on the command line: not being DICOM is then a failure, not a skip


@dataclass
class ImportSummary:
    stored: int = 0
    duplicates: int = 0
    replaced: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def add(self, label: str, result: StoreResult, explicit: bool) -> None:
        if result.outcome == "stored":
            self.stored += 1
        elif result.outcome == "duplicate":
            self.duplicates += 1
        elif result.outcome == "replaced":
            self.replaced += 1
        elif not explicit and result.message.startswith("not a DICOM Part 10 file"):
            self.skipped.append((label, result.message))
        else:
            self.failed.append((label, f"0x{result.failure_reason or 0:04X} {result.message}"))


def _is_dicomdir(path: Path) -> bool:
    if path.name.upper() == "DICOMDIR":
        return True
    try:
        with open(path, "rb") as fp:
            head = fp.read(132 + 512)
    except OSError:
        return False
    return head[128:132] == b"DICM" and DICOMDIR_SOP_CLASS.encode() in head


def _dicomdir_members(path: Path) -> list[Path]:
    try:
        ds = dcmread(path)
    except (InvalidDicomError, OSError, ValueError):
        return []
    members = []
    for record in ds.get("DirectoryRecordSequence", []):
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [file_id] if isinstance(file_id, str) else list(file_id)
        members.append(path.parent.joinpath(*parts))
    return members


def iter_sources(paths: list[Path], archive: Archive) -> Iterator[Source]:
    staging, limit = archive.staging_dir, archive.spool_memory_bytes

    def from_file(path: Path, explicit: bool) -> Source:
        return Source(str(path), lambda: archive.stage_file(path), explicit)

    def from_zip(path: Path) -> Iterator[Source]:
        with zipfile.ZipFile(path) as zf:
            names = [info.filename for info in zf.infolist() if not info.is_dir()]
        for name in names:
            def stage(name: str = name) -> StagedBlob:
                with zipfile.ZipFile(path) as zf, zf.open(name) as member:
                    return stage_stream(cast(BinaryIO, member), staging, limit)
            yield Source(f"{path}!{name}", stage, False)

    def visit(path: Path, explicit: bool) -> Iterator[Source]:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file():
                    yield from visit(child, False)
        elif zipfile.is_zipfile(path):
            yield from from_zip(path)
        elif _is_dicomdir(path):
            members = _dicomdir_members(path)
            # Inside a folder walk the members are visited anyway; named alone, the DICOMDIR brings them.
            if explicit:
                for member in members:
                    yield from_file(member, True)
        else:
            yield from_file(path, explicit)

    seen: set[Path] = set()
    for root in paths:
        for source in visit(root, True):
            key = Path(source.label)
            if "!" not in source.label and key in seen:
                continue
            seen.add(key)
            yield source


def run_import(
    archive: Archive, paths: list[Path], on_result: Callable[[str, StoreResult], None] | None = None,
    workers: int = 2,
) -> ImportSummary:
    summary = ImportSummary()

    def work(source: Source) -> tuple[Source, StoreResult]:
        try:
            blob = source.stage()
        except OSError as exc:
            return source, StoreResult("failed", failure_reason=0x0110, message=f"cannot read: {exc.strerror}")
        except zipfile.BadZipFile as exc:
            return source, StoreResult("failed", failure_reason=0xC000, message=f"bad zip member: {exc}")
        return source, archive.ingest.store(blob)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for source, result in pool.map(work, iter_sources(paths, archive)):
            summary.add(source.label, result, source.explicit)
            if on_result is not None:
                on_result(source.label, result)
    return summary
