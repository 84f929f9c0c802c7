"""Packing: a series' loose blobs into one series container blob, back again, and checking what is packed.

Crash safety rests on the order of steps. Pack: the container is written and stored, then read back from
its tier and every instance checked against the index's SHA-256, then one transaction points the
instances at it, and only then are the loose blobs deleted. Before the switch the index names the loose
blobs (an unswitched container is an orphan the sweeper removes); after it the container (a loose blob
left behind is a spare copy a later pack removes). Unpack mirrors this: blobs restored and checked, then
the switch, then the container deleted.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from ..backends.container import ContainerError, SeriesContainer, pack_series
from ..backends.tiers import LocalTier, ObjectMissing, StorageError, TierSet
from ..index.models import Instance, PackedSeries, Series, Study
from .containers import ContainerReader, InstanceIntegrityError

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


class PackingError(Exception):
    """Packing or unpacking a series did not happen; the series is as it was (readable where it was)."""


@dataclass
class PackOutcome:
    series_instance_uid: str
    status: str  # "packed", "unchanged" (already packed), "failed"
    instances: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    codec: str = ""
    seconds: float = 0.0
    loose_removed: int = 0
    message: str = ""


@dataclass
class UnpackOutcome:
    series_instance_uid: str
    status: str  # "unpacked", "unchanged" (nothing packed), "failed"
    instances: int = 0
    bytes_restored: int = 0
    seconds: float = 0.0
    message: str = ""


@dataclass
class Corruption:
    series_instance_uid: str
    sop_instance_uid: str | None  # None: the container as a whole (index, footer, or its blob is missing)
    detail: str


@dataclass
class VerifyOutcome:
    containers: int = 0
    instances: int = 0
    bytes_checked: int = 0
    seconds: float = 0.0
    corrupt: list[Corruption] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.corrupt


def _tables() -> tuple[Any, Any, Any, Any]:
    return (Study.__table__, Series.__table__, Instance.__table__,  # type: ignore[attr-defined]
            PackedSeries.__table__)  # type: ignore[attr-defined]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fp:
        while chunk := fp.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class PackingService:
    def __init__(self, engine: Engine, tiers: TierSet, staging_dir: Path) -> None:
        self.engine = engine
        self.tiers = tiers
        self.staging_dir = staging_dir
        self.reader = ContainerReader(tiers)

    # -- choosing ------------------------------------------------------------------------------------

    def series_to_pack(self, older_than_days: float = 0.0) -> list[str]:
        """Series with at least one loose instance whose newest instance is older than the given age."""
        _, series_t, i, _ = _tables()
        cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
        stmt = (
            select(series_t.c.series_instance_uid)
            .select_from(i.join(series_t, i.c.series_fk == series_t.c.id))
            .group_by(series_t.c.id, series_t.c.series_instance_uid)
            .having(func.max(i.c.created_at) <= cutoff)
            .having(func.count(i.c.id) > func.count(i.c.container_fk))
            .order_by(series_t.c.id)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(stmt).scalars())

    def _rows(self, conn: Connection, series_uid: str) -> list[Any]:
        studies, series_t, i, packed = _tables()
        stmt = (
            select(i.c.id, i.c.sop_instance_uid, i.c.tier, i.c.storage_key, i.c.sha256, i.c.size, i.c.container_fk,
                   studies.c.study_instance_uid, packed.c.tier.label("container_tier"),
                   packed.c.storage_key.label("container_key"), packed.c.instances.label("container_instances"))
            .select_from(i.join(series_t, i.c.series_fk == series_t.c.id)
                         .join(studies, series_t.c.study_fk == studies.c.id)
                         .outerjoin(packed, i.c.container_fk == packed.c.id))
            .where(series_t.c.series_instance_uid == series_uid)
            .order_by(i.c.id)
        )
        return list(conn.execute(stmt).all())

    def _in_container(self, row: Any) -> bool:
        """Whether the row's bytes are read from its container (it holds this very version)."""
        return row.container_fk is not None and self.reader.holds(
            row.container_tier, row.container_key, row.sop_instance_uid, row.sha256)

    # -- pack ------------------------------------------------------------------------------------------

    def pack(self, series_uid: str, codec: str = "auto", keep_loose: bool = False) -> PackOutcome:
        t0 = time.perf_counter()
        with self.engine.connect() as conn:
            rows = self._rows(conn, series_uid)
        if not rows:
            raise PackingError(f"no series {series_uid} in the archive")
        outcome = PackOutcome(series_uid, "packed", instances=len(rows), bytes_in=sum(r.size for r in rows))
        containers = {r.container_fk for r in rows}
        if (len(containers) == 1 and None not in containers and rows[0].container_instances == len(rows)
                and all(self._in_container(r) for r in rows)):
            outcome.status, outcome.message = "unchanged", "already packed"
            if not keep_loose:
                outcome.loose_removed = self._delete_loose(rows)
            outcome.seconds = time.perf_counter() - t0
            return outcome

        write = self.tiers.write
        key = f"packed/{rows[0].study_instance_uid}/{series_uid}/{uuid.uuid4().hex}.dcms"
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.staging_dir, prefix="pack-") as tmp:
            folder = Path(tmp)
            sources = [self._source(row, folder, n) for n, row in enumerate(rows)]
            target = folder / "series.dcms"
            try:
                with open(target, "wb") as out:
                    report = pack_series(sources, out, codec)
            except (ContainerError, ValueError) as exc:
                raise PackingError(f"series {series_uid} could not be packed: {exc}") from exc
            sha = _file_sha256(target)
            outcome.bytes_out, outcome.codec = target.stat().st_size, report.codec
            write.store_file(target, key)
        try:
            self._check_stored(write.name, key, sha, rows)
            replaced = self._switch(rows, write.name, key, sha, outcome, series_uid)
        except BaseException:
            write.delete(key)
            raise
        for tier, old_key in replaced:
            self._delete_blob(tier, old_key)
        if not keep_loose:
            outcome.loose_removed = self._delete_loose(rows)
        outcome.seconds = time.perf_counter() - t0
        return outcome

    def _source(self, row: Any, folder: Path, n: int) -> Path:
        """A file with the instance's bytes: the loose blob itself when local, else a copy in ``folder``."""
        target = folder / f"{n:06d}.dcm"
        if self._in_container(row):
            target.write_bytes(self.reader.read_instance(row.container_tier, row.container_key, row.sop_instance_uid))
            return target
        tier = self.tiers.raw(row.tier)
        if isinstance(tier, LocalTier):
            path = tier.root / row.storage_key
            if path.is_file():
                return path
        with self.tiers[row.tier].open(row.storage_key) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
        return target

    def _check_stored(self, tier_name: str, key: str, sha: str, rows: list[Any]) -> None:
        """Read the container back from its tier: whole-blob hash, then every instance against the index."""
        tier = self.tiers.raw(tier_name)
        if tier.sha256(key) != sha:
            raise PackingError(f"the stored container {key} does not read back as written")
        with tier.open(key) as fp:
            container = SeriesContainer.open(fp)
            held = set(container.instance_uids())
            for row in rows:
                if row.sop_instance_uid not in held:
                    raise PackingError(f"instance {row.sop_instance_uid} is missing from the packed container")
                try:
                    data = container.read_instance(row.sop_instance_uid)
                except ContainerError as exc:
                    raise PackingError(f"instance {row.sop_instance_uid} does not unpack: {exc}") from exc
                if hashlib.sha256(data).hexdigest() != row.sha256:
                    raise PackingError(
                        f"instance {row.sop_instance_uid} unpacks to bytes whose SHA-256 differs from the index; "
                        "its stored blob may be damaged")

    def _switch(self, rows: list[Any], tier: str, key: str, sha: str, outcome: PackOutcome,
                series_uid: str) -> list[tuple[str, str]]:
        """One transaction: record the container, point the instances at it, drop containers left unused."""
        _, _, i, packed = _tables()
        ids = [r.id for r in rows]
        expected = {r.id: (r.sha256, r.container_fk) for r in rows}
        with self.engine.begin() as conn:
            current = conn.execute(
                select(i.c.id, i.c.sha256, i.c.container_fk).where(i.c.id.in_(ids)).with_for_update()).all()
            if {r.id: (r.sha256, r.container_fk) for r in current} != expected:
                raise PackingError(f"series {series_uid} changed while it was packed; nothing was switched")
            inserted = conn.execute(insert(packed).values(
                study_instance_uid=rows[0].study_instance_uid, series_instance_uid=series_uid, tier=tier,
                storage_key=key, codec=outcome.codec, instances=len(rows), bytes_in=outcome.bytes_in,
                bytes_out=outcome.bytes_out, sha256=sha, packed_at=datetime.now(UTC),
            )).inserted_primary_key
            assert inserted is not None
            new_id = inserted[0]
            conn.execute(update(i).where(i.c.id.in_(ids)).values(container_fk=new_id))
            return _drop_unreferenced(conn)

    # -- unpack ----------------------------------------------------------------------------------------

    def unpack(self, series_uid: str) -> UnpackOutcome:
        t0 = time.perf_counter()
        with self.engine.connect() as conn:
            rows = [r for r in self._rows(conn, series_uid) if r.container_fk is not None]
        outcome = UnpackOutcome(series_uid, "unpacked", instances=len(rows))
        if not rows:
            outcome.status, outcome.message = "unchanged", "no packed instance in this series"
            return outcome
        for row in rows:
            if not self._in_container(row):
                continue  # replaced since packing: its loose blob is the copy already
            data = self.reader.read_instance(row.container_tier, row.container_key, row.sop_instance_uid)
            if hashlib.sha256(data).hexdigest() != row.sha256:
                raise InstanceIntegrityError(row.sop_instance_uid, "unpacked bytes differ from the index's SHA-256")
            tier = self.tiers.raw(row.tier)
            if not (tier.exists(row.storage_key) and tier.sha256(row.storage_key) == row.sha256):
                tier.store_bytes(data, row.storage_key)
                if tier.sha256(row.storage_key) != row.sha256:
                    raise PackingError(f"instance {row.sop_instance_uid} did not read back from tier {row.tier}")
                outcome.bytes_restored += len(data)
        _, _, i, _ = _tables()
        with self.engine.begin() as conn:
            conn.execute(update(i).where(i.c.id.in_([r.id for r in rows])).values(container_fk=None))
            unused = _drop_unreferenced(conn)
        for tier_name, key in unused:
            self._delete_blob(tier_name, key)
        outcome.seconds = time.perf_counter() - t0
        return outcome

    # -- verify ----------------------------------------------------------------------------------------

    def packed_series(self) -> list[str]:
        _, _, _, packed = _tables()
        with self.engine.connect() as conn:
            return list(conn.execute(select(packed.c.series_instance_uid).order_by(packed.c.id)).scalars())

    def verify(self, progress: Callable[[str], None] | None = None) -> VerifyOutcome:
        """Every container: its blocks and each instance's SHA-256 (which decodes every frame), and that it
        holds each instance the index reads from it, in the version the index names."""
        t0 = time.perf_counter()
        _, _, i, packed = _tables()
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(packed.c.id, packed.c.series_instance_uid, packed.c.tier, packed.c.storage_key,
                       packed.c.sha256.label("container_sha256"), i.c.sop_instance_uid, i.c.sha256)
                .select_from(packed.outerjoin(i, i.c.container_fk == packed.c.id))
                .order_by(packed.c.id)
            ).all()
        by_container: dict[int, list[Any]] = {}
        for row in rows:
            by_container.setdefault(row.id, []).append(row)
        result = VerifyOutcome()
        for members in by_container.values():
            first = members[0]
            result.containers += 1
            result.corrupt.extend(self._verify_one(first, [m for m in members if m.sop_instance_uid], result))
            if progress is not None:
                progress(first.series_instance_uid)
        result.seconds = time.perf_counter() - t0
        return result

    def _verify_one(self, head: Any, members: list[Any], result: VerifyOutcome) -> list[Corruption]:
        series = head.series_instance_uid
        tier = self.tiers.raw(head.tier)
        try:
            with tier.open(head.storage_key) as fp:
                container = SeriesContainer.open(fp)
                report = container.verify()
                held = {uid: container._get(uid).meta["sha256"] for uid in container.instance_uids()}
        except (ObjectMissing, StorageError) as exc:
            return [Corruption(series, None, f"container blob {head.storage_key} cannot be read: {exc}")]
        except ContainerError as exc:
            return [Corruption(series, None, f"container {head.storage_key}: {exc}")]
        result.instances += report.instances
        result.bytes_checked += report.bytes_checked
        found = [Corruption(series, e.sop_instance_uid, str(e)) for e in report.errors]
        for member in members:
            if member.sop_instance_uid not in held:
                found.append(Corruption(series, member.sop_instance_uid, "the index reads it from a container "
                                        "that does not hold it"))
        if not found and tier.sha256(head.storage_key) != head.container_sha256:
            found.append(Corruption(series, None, f"container {head.storage_key} differs from the SHA-256 "
                                    "recorded when it was packed (damage outside any instance's blocks)"))
        return found

    # -- helpers ---------------------------------------------------------------------------------------

    def _delete_loose(self, rows: list[Any]) -> int:
        removed = 0
        for row in rows:
            try:
                tier = self.tiers.raw(row.tier)
                if tier.exists(row.storage_key):
                    tier.delete(row.storage_key)
                    removed += 1
            except (StorageError, OSError) as exc:
                log.warning("loose blob %s/%s left in place: %s", row.tier, row.storage_key, exc)
        return removed

    def _delete_blob(self, tier: str, key: str) -> None:
        self.reader.forget(tier, key)
        try:
            self.tiers.raw(tier).delete(key)
        except (StorageError, OSError) as exc:
            log.warning("container %s/%s left for the sweeper: %s", tier, key, exc)


def _drop_unreferenced(conn: Connection) -> list[tuple[str, str]]:
    """Delete container rows no instance reads from; returns their blobs' (tier, key) to delete after commit."""
    _, _, i, packed = _tables()
    unused = conn.execute(
        select(packed.c.id, packed.c.tier, packed.c.storage_key)
        .where(~exists().where(i.c.container_fk == packed.c.id))
    ).all()
    if unused:
        conn.execute(delete(packed).where(packed.c.id.in_([u.id for u in unused])))
    return [(u.tier, u.storage_key) for u in unused]


def drop_unreferenced_containers(engine: Engine, tiers: TierSet) -> int:
    """After instances were deleted: containers no instance reads from any more go, row then blob."""
    with engine.begin() as conn:
        unused = _drop_unreferenced(conn)
    for tier, key in unused:
        try:
            tiers.raw(tier).delete(key)
        except (StorageError, OSError) as exc:
            log.warning("container %s/%s left for the sweeper: %s", tier, key, exc)
    return len(unused)


def container_keys(engine: Engine, tier: str) -> set[str]:
    """Storage keys of the containers in ``tier`` (the sweeper must not take them for orphans)."""
    _, _, _, packed = _tables()
    with engine.connect() as conn:
        return set(conn.execute(select(packed.c.storage_key).where(packed.c.tier == tier)).scalars())
