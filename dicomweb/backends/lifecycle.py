"""Lifecycle: which studies should move between tiers now, and when each study was last read.

Rules come from settings (``[[lifecycle]]``): per institution (InstitutionName) with a default, a study on a
rule's source tier moves to its target once ``after_days`` have passed since it was stored or last read.
A tier past its high-water mark sends its least recently read studies down (by the rule for that source,
else to the next slower tier) until it is under the low-water mark. Planning is one query.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from ..index.models import Instance, Series, Study, StudyAccess
from ..settings import LifecycleRule, Settings, SettingsError
from .tiers import ROLE_ORDER, Tier, TierSet

log = logging.getLogger(__name__)
DAY = 86400.0


@dataclass(frozen=True)
class PlannedMove:
    study_instance_uid: str
    source: str
    target: str
    instances: int
    bytes: int
    reason: str


@dataclass(frozen=True)
class TierUsage:
    name: str
    role: str
    url: str
    capacity_bytes: int | None
    studies: int
    instances: int
    bytes: int


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _groups(engine: Engine) -> list[Any]:
    """Per study and tier: instances, bytes, institution, stored and last-read times (one query)."""
    study, series, inst = (Study.__table__, Series.__table__, Instance.__table__)  # type: ignore[attr-defined]
    access = StudyAccess.__table__  # type: ignore[attr-defined]
    stmt = (
        select(study.c.study_instance_uid, study.c.institution_name, study.c.created_at, access.c.last_read_at,
               inst.c.tier, func.count(inst.c.id).label("instances"), func.sum(inst.c.size).label("bytes"))
        .select_from(inst.join(series, inst.c.series_fk == series.c.id).join(study, series.c.study_fk == study.c.id)
                     .outerjoin(access, access.c.study_instance_uid == study.c.study_instance_uid))
        .group_by(study.c.study_instance_uid, study.c.institution_name, study.c.created_at, access.c.last_read_at,
                  inst.c.tier)
    )
    with engine.connect() as conn:
        return list(conn.execute(stmt).all())


def usage(engine: Engine, tiers: TierSet) -> list[TierUsage]:
    """Studies, instances and bytes on each configured tier, fastest tier first."""
    inst, series = Instance.__table__, Series.__table__  # type: ignore[attr-defined]
    stmt = (select(inst.c.tier, func.count(func.distinct(series.c.study_fk)), func.count(inst.c.id),
                   func.coalesce(func.sum(inst.c.size), 0))
            .select_from(inst.join(series, inst.c.series_fk == series.c.id)).group_by(inst.c.tier))
    with engine.connect() as conn:
        counts = {row[0]: (int(row[1]), int(row[2]), int(row[3])) for row in conn.execute(stmt)}
    return [TierUsage(t.name, t.role, t.url, t.capacity_bytes, *counts.get(t.name, (0, 0, 0))) for t in tiers.by_role()]


def check_rules(settings: Settings, tiers: TierSet) -> None:
    for rule in settings.lifecycle:
        for name in (rule.source, rule.target):
            if name not in tiers.tiers:
                raise SettingsError(f"lifecycle rule {rule.source} -> {rule.target} names an unknown tier {name!r}")
    if settings.promote_on_read and settings.promote_on_read not in tiers.tiers:
        raise SettingsError(f"promote_on_read names an unknown tier {settings.promote_on_read!r}")


def _rule_for(rules: tuple[LifecycleRule, ...], institution: str, source: str) -> LifecycleRule | None:
    own = [r for r in rules if r.source == source and r.institution and r.institution == institution]
    if own:
        return own[0]
    return next((r for r in rules if r.source == source and not r.institution), None)


def _next_down(tiers: TierSet, source: str) -> str | None:
    rank = ROLE_ORDER.get(tiers.tiers[source].role, 3)
    slower = [t for t in tiers.by_role() if ROLE_ORDER.get(t.role, 3) > rank]
    return slower[0].name if slower else None


def plan(engine: Engine, tiers: TierSet, settings: Settings, now: datetime | None = None) -> list[PlannedMove]:
    """The moves the rules ask for now (age rules first, then high-water relief), one per study and tier."""
    check_rules(settings, tiers)
    now = now or datetime.now(UTC)
    moves: dict[tuple[str, str], PlannedMove] = {}
    per_tier: dict[str, list[tuple[datetime, Any]]] = {}
    for g in _groups(engine):
        if g.tier not in tiers.tiers:
            continue
        stored = _utc(g.created_at) or now
        last_read = _utc(g.last_read_at)
        activity = max(stored, last_read) if last_read else stored
        per_tier.setdefault(g.tier, []).append((activity, g))
        rule = _rule_for(settings.lifecycle, g.institution_name or "", g.tier)
        if rule is None:
            continue
        since = stored if rule.since == "stored" else activity
        age_days = (now - since).total_seconds() / DAY
        if age_days >= rule.after_days:
            moves[(g.study_instance_uid, g.tier)] = PlannedMove(
                g.study_instance_uid, g.tier, rule.target, int(g.instances), int(g.bytes or 0),
                f"{age_days:.1f} days since {'stored' if rule.since == 'stored' else 'last read'}"
                f" >= {rule.after_days:g}")
    for name, groups in per_tier.items():
        tier = tiers.tiers[name]
        if not tier.capacity_bytes:
            continue
        used = sum(int(g.bytes or 0) for _, g in groups)
        if used <= settings.tier_high_water * tier.capacity_bytes:
            continue
        goal = settings.tier_low_water * tier.capacity_bytes
        used -= sum(m.bytes for (_, src), m in moves.items() if src == name)
        for _, g in sorted(groups, key=lambda item: item[0]):  # least recently active first
            if used <= goal:
                break
            if (g.study_instance_uid, name) in moves:
                continue
            rule = _rule_for(settings.lifecycle, g.institution_name or "", name)
            target = rule.target if rule else _next_down(tiers, name)
            if target is None:
                break
            moves[(g.study_instance_uid, name)] = PlannedMove(
                g.study_instance_uid, name, target, int(g.instances), int(g.bytes or 0),
                f"tier {name} above {settings.tier_high_water:.0%} of its capacity")
            used -= int(g.bytes or 0)
    return sorted(moves.values(), key=lambda m: (ROLE_ORDER.get(tiers.tiers[m.source].role, 3), m.study_instance_uid))


class AccessTracker:
    """Remembers which studies were read and from which tier; flushes last-read times in one statement.

    Called on every read, so it only touches a dict under a lock; ``promote`` is called once per study and
    flush period when a study is read from a tier other than ``promote_to``.
    """

    def __init__(self, engine: Engine, *, promote_to: str = "", promote: Callable[[str], None] | None = None,
                 interval: float = 10.0) -> None:
        self.engine = engine
        self.promote_to = promote_to
        self.promote = promote
        self.interval = interval
        self._pending: dict[str, datetime] = {}
        self._promoted: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def may_block(self, tier: Tier) -> bool:
        """A read from another tier than ``promote_to`` may schedule a promotion (a job: an index write)."""
        return bool(self.promote_to) and tier.name != self.promote_to

    def __call__(self, tier: Tier, key: str) -> None:
        study = key.partition("/")[0]
        promote = False
        with self._lock:
            self._pending[study] = datetime.now(UTC)
            if self.promote_to and tier.name != self.promote_to and study not in self._promoted:
                self._promoted.add(study)
                promote = True
        if promote and self.promote is not None:
            try:
                self.promote(study)
            except Exception:
                log.exception("could not schedule bringing study %s up to %s", study, self.promote_to)

    def flush(self) -> int:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._promoted.clear()
        if not pending:
            return 0
        table = StudyAccess.__table__  # type: ignore[attr-defined]
        rows = [{"study_instance_uid": uid, "last_read_at": when} for uid, when in pending.items()]
        dialect = self.engine.dialect.name
        insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
        stmt = insert.on_conflict_do_update(index_elements=["study_instance_uid"],
                                            set_={"last_read_at": insert.excluded.last_read_at})
        with self.engine.begin() as conn:
            conn.execute(stmt, rows)
        return len(rows)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dicomweb-access", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:
                log.exception("could not record last-read times")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.flush()
        except Exception:
            log.exception("could not record last-read times")
