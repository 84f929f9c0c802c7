"""Moving a study's instances between tiers: copy, verify at the destination, switch, delete the source.

Every step is safe to die in. A ``tier_move`` row is written before the first byte is copied and removed
only when the source copy is gone, so after a crash :meth:`MigrationService.recover` finds each possible
double and keeps exactly the copy the index names (the index always names a complete, verified copy: the
switch happens after verification, in one transaction). Moving again is a no-op for instances already there.

Packed series (issue 8) move with their study: each series container on another tier is copied whole under
the same key, its SHA-256 checked against the one recorded at packing, and switched in the same transaction
as the instances it holds. A packed instance whose loose blob is gone has nothing of its own to copy: only
its ``tier`` (where an unpack restores it) follows. A crash leaves at most one container copy the index does
not name, which the sweeper removes as it removes an unswitched container after a crashed pack.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, exists, select, update
from sqlalchemy.engine import Connection, Engine

from ..backends.tiers import StorageError, Tier, TierSet
from ..index.models import Instance, PackedSeries, Series, Study, TierMove

log = logging.getLogger(__name__)
HOST = socket.gethostname()



def _switch_rows(conn: Connection, table: Any, target: str, rows: list[tuple[int, str, str]]) -> set[int]:
    """Point the rows (id, tier copied from, key) at ``target`` where they still name that copy; the ids that
    now name ``target`` (a row replaced, deleted or repacked meanwhile is left as it is)."""
    conn.execute(
        update(table)
        .where(table.c.id == bindparam("row_id"), table.c.tier == bindparam("src"),
               table.c.storage_key == bindparam("key"))
        .values(tier=target),
        [{"row_id": row_id, "src": tier, "key": key} for row_id, tier, key in rows],
    )
    return set(conn.execute(select(table.c.id).where(
        table.c.id.in_([row_id for row_id, _, _ in rows]), table.c.tier == target)).scalars())

class MigrationError(RuntimeError):
    """A move could not finish; the study stays readable where the index says it is."""


class StudyBusy(MigrationError):
    """Another live mover holds part of this study; try again later."""


@dataclass
class MoveReport:
    study_instance_uid: str
    target: str
    instances: int = 0
    bytes: int = 0
    skipped: int = 0  # changed or deleted while being copied: left where the index says they are
    containers: int = 0  # series containers moved (their bytes count in ``bytes``)


@dataclass
class RecoveryReport:
    moves: int = 0
    copies_removed: int = 0


def _tables() -> tuple[Any, Any, Any, Any]:
    return (Study.__table__, Series.__table__, Instance.__table__,  # type: ignore[attr-defined]
            TierMove.__table__)  # type: ignore[attr-defined]


def _packed() -> Any:
    return PackedSeries.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class _Container:
    id: int
    tier: str
    storage_key: str
    sha256: str
    size: int


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _owner_alive(owner: str) -> bool:
    """Whether the mover that wrote a row may still be running (a dead local process certainly is not)."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != HOST or not pid_text.isdigit():
        return True
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class MigrationService:
    def __init__(self, engine: Engine, tiers: TierSet, *, drain_seconds: float = 1.0, stale_seconds: float = 600):
        self.engine = engine
        self.tiers = tiers
        self.drain_seconds = drain_seconds
        self.stale_seconds = stale_seconds
        self.owner = f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    # -- moving ---------------------------------------------------------------------------------------------

    def move_study(self, study: str, target: str, progress: Callable[[int], None] | None = None) -> MoveReport:
        """Move every instance and series container of ``study`` not yet on ``target`` there; returns what moved."""
        destination = self.tiers.raw(target)
        report = MoveReport(study, target)
        self.recover(study=study)
        studies, series, instances, moves = _tables()
        packed = _packed()
        with self.engine.begin() as conn:
            if conn.execute(select(moves.c.instance_id).where(moves.c.study_instance_uid == study).limit(1)).first():
                raise StudyBusy(f"study {study} is being moved by another worker")
            rows = conn.execute(
                select(instances.c.id, instances.c.tier, instances.c.storage_key, instances.c.size,
                       instances.c.sha256, instances.c.container_fk)
                .select_from(instances.join(series, instances.c.series_fk == series.c.id)
                             .join(studies, series.c.study_fk == studies.c.id))
                .where(studies.c.study_instance_uid == study, instances.c.tier != target)
            ).all()
            containers = [_Container(r.id, r.tier, r.storage_key, r.sha256, r.bytes_out) for r in conn.execute(
                select(packed.c.id, packed.c.tier, packed.c.storage_key, packed.c.sha256, packed.c.bytes_out)
                .where(packed.c.study_instance_uid == study, packed.c.tier != target,
                       exists().where(instances.c.container_fk == packed.c.id))
            ).all()]
            if not rows and not containers:
                return report
            # The intent is durable before any copy exists, so a crash never leaves a silent double.
            if rows:
                conn.execute(moves.insert(), [
                    {"instance_id": r.id, "study_instance_uid": study, "source_tier": r.tier, "target_tier": target,
                     "storage_key": r.storage_key, "state": "copying", "owner": self.owner,
                     "updated_at": datetime.now(UTC)}
                    for r in rows
                ])
        copied: list[_Container] = []
        try:
            loose = self._copy_loose(rows, destination, progress)
            for container in containers:
                copied.append(container)  # before the copy: a failed one leaves debris to remove too
                self._copy(self.tiers.raw(container.tier), destination, container.storage_key, container.sha256)
                if progress is not None:
                    progress(container.size)
        except MigrationError:
            self._abandon([r.id for r in rows])
            self._drop_copies(copied, target)
            raise
        switched, moved = self._switch(study, target, copied)
        unswitched = [r.id for r in rows if r.id not in switched]
        if unswitched:
            self._abandon(unswitched)
        self._drop_copies([c for c in copied if c.id not in moved], target)
        if (switched or moved) and self.drain_seconds > 0:
            time.sleep(self.drain_seconds)  # reads that looked up the old location a moment ago finish there
        for row in rows:
            if row.id in switched:
                if row.id in loose:
                    self.tiers.raw(row.tier).delete(row.storage_key)
                    report.bytes += row.size
                report.instances += 1
        for container in copied:
            if container.id in moved:
                self._delete_quietly(container.tier, container.storage_key)
                report.containers += 1
                report.bytes += container.size
        with self.engine.begin() as conn:
            conn.execute(delete(moves).where(moves.c.instance_id.in_(switched), moves.c.owner == self.owner))
        report.skipped = len(unswitched)
        return report

    def _copy_loose(self, rows: Sequence[Any], destination: Tier, progress: Callable[[int], None] | None) -> set[int]:
        """Copy and verify each row's loose blob; returns the ids copied (a packed row without one has none)."""
        copied: set[int] = set()
        for row in rows:
            source = self.tiers.raw(row.tier)
            try:
                if row.container_fk is not None and not source.exists(row.storage_key):
                    continue  # its bytes are in its series container, which moves on its own
            except StorageError as exc:
                raise MigrationError(f"looking up {row.storage_key} on {row.tier} failed: {exc}") from exc
            self._copy(source, destination, row.storage_key, row.sha256)
            copied.add(row.id)
            if progress is not None:
                progress(row.size)
        return copied

    @staticmethod
    def _copy(source: Tier, destination: Tier, key: str, sha256: str) -> None:
        """Stream ``key`` from ``source`` to ``destination`` and check what the destination reads back."""
        try:
            with source.open(key) as reader:
                destination.store_stream(reader, key)
            digest = destination.sha256(key)
        except StorageError as exc:
            raise MigrationError(f"copying {key} from {source.name} to {destination.name} failed: {exc}") from exc
        if digest != sha256:
            raise MigrationError(f"{key} on {destination.name} has sha256 {digest}, the index says {sha256}; not moved")

    def _drop_copies(self, copied: list[_Container], target: str) -> None:
        """Remove container copies on ``target`` that the index does not name (a move that did not switch)."""
        if not copied:
            return
        packed = _packed()
        with self.engine.connect() as conn:
            named = set(conn.execute(select(packed.c.storage_key).where(
                packed.c.tier == target, packed.c.storage_key.in_([c.storage_key for c in copied]))).scalars())
        for container in copied:
            if container.storage_key not in named:
                self._delete_quietly(target, container.storage_key)

    def _delete_quietly(self, tier: str, key: str) -> None:
        try:
            self.tiers.raw(tier).delete(key)
        except StorageError as exc:
            log.warning("copy %s/%s left for the sweeper: %s", tier, key, exc)

    def _switch(self, study: str, target: str, containers: list[_Container]) -> tuple[set[int], set[int]]:
        """Point the index at the verified copies, in one transaction; returns the instance and container
        ids switched."""
        _, _, instances, moves = _tables()
        with self.engine.begin() as conn:
            moved = self._switch_containers(conn, target, containers)
            mine = conn.execute(
                select(moves.c.instance_id, moves.c.source_tier, moves.c.storage_key)
                .where(moves.c.study_instance_uid == study, moves.c.owner == self.owner, moves.c.state == "copying")
                .with_for_update()
            ).all()
            if not mine:
                return set(), moved
            # Guarded by the old location: an instance replaced or deleted meanwhile is not switched.
            switched = _switch_rows(conn, instances, target,
                                    [(m.instance_id, m.source_tier, m.storage_key) for m in mine])
            if switched:
                conn.execute(update(moves).where(moves.c.instance_id.in_(switched)).values(
                    state="switched", updated_at=datetime.now(UTC)))
        return switched, moved

    @staticmethod
    def _switch_containers(conn: Connection, target: str, containers: list[_Container]) -> set[int]:
        """Containers still where they were copied from now name ``target`` (a repack meanwhile is left be)."""
        if not containers:
            return set()
        return _switch_rows(conn, _packed(), target, [(c.id, c.tier, c.storage_key) for c in containers])

    def _abandon(self, ids: list[int]) -> None:
        """Drop our own unfinished moves: remove their rows, then every copy the index does not name."""
        _, _, _, moves = _tables()
        with self.engine.begin() as conn:
            rows = list(conn.execute(
                select(moves).where(moves.c.instance_id.in_(ids), moves.c.owner == self.owner)).all())
            conn.execute(delete(moves).where(moves.c.instance_id.in_(ids), moves.c.owner == self.owner))
            in_use = self._locations(conn, [r.storage_key for r in rows])
        self._remove_unnamed(rows, in_use)

    # -- recovery -------------------------------------------------------------------------------------------

    def recover(self, study: str | None = None) -> RecoveryReport:
        """Finish or undo the moves of dead or stale movers: keep the copy the index names, delete the other."""
        _, _, _, moves = _tables()
        report = RecoveryReport()
        stale_before = datetime.now(UTC) - timedelta(seconds=self.stale_seconds)
        with self.engine.begin() as conn:
            query = select(moves)
            if study is not None:
                query = query.where(moves.c.study_instance_uid == study)
            candidates = conn.execute(query).all()
            owners = {r.owner for r in candidates
                      if r.owner != self.owner and (not _owner_alive(r.owner) or _utc(r.updated_at) < stale_before)}
            rows = list(r for r in candidates if r.owner in owners)
            if not rows:
                return report
            # Deleting the rows first takes them over: a mover still switching blocks here or sees them gone.
            for owner in owners:
                conn.execute(delete(moves).where(
                    moves.c.owner == owner, moves.c.instance_id.in_([r.instance_id for r in rows])))
            in_use = self._locations(conn, [r.storage_key for r in rows])
        report.moves = len(rows)
        report.copies_removed = self._remove_unnamed(rows, in_use)
        return report

    def pending(self) -> int:
        _, _, _, moves = _tables()
        with self.engine.connect() as conn:
            return len(conn.execute(select(moves.c.instance_id)).all())

    @staticmethod
    def _locations(conn: Connection, keys: list[str]) -> set[tuple[str, str]]:
        _, _, instances, _ = _tables()
        if not keys:
            return set()
        found = conn.execute(select(instances.c.tier, instances.c.storage_key)
                             .where(instances.c.storage_key.in_(set(keys)))).all()
        return {(r.tier, r.storage_key) for r in found}

    def _remove_unnamed(self, rows: list[Any], in_use: set[tuple[str, str]]) -> int:
        removed = 0
        for row in rows:
            for tier in (row.source_tier, row.target_tier):
                if (tier, row.storage_key) in in_use:
                    continue
                try:
                    if self.tiers.raw(tier).exists(row.storage_key):
                        self.tiers.raw(tier).delete(row.storage_key)
                        removed += 1
                except StorageError as exc:
                    log.warning("copy %s/%s left for the sweeper: %s", tier, row.storage_key, exc)
        return removed


__all__ = ["MigrationError", "MigrationService", "MoveReport", "RecoveryReport", "StudyBusy"]
