"""Audit tests: a migrated index (SQLite and PostgreSQL) and helpers to fill the chain."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from dicomweb.audit.chain import append
from dicomweb.audit.event import AuditEvent
from dicomweb.index import db

T0 = datetime(2024, 5, 1, 8, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    created = db.make_engine(database_url)
    db.upgrade(created)
    yield created
    created.dispose()


def sample(i: int, **values: object) -> AuditEvent:
    """The i-th event of a test chain: varied actions, subjects, studies and institutions."""
    defaults: dict[str, object] = dict(
        action=("query", "retrieve", "store")[i % 3], outcome="success", subject=f"user{i % 4}",
        roles="doctor", institution_of_principal=("North", "South")[i % 2], status=200, method="GET",
        path=f"/dicom-web/studies/1.2.{i}", query=f"limit={i}", study_uid=f"1.2.{i}", series_uid=f"1.2.{i}.1",
        instance_uid=f"1.2.{i}.1.1", patient_id=f"P{i % 10}", institution=("North", "South", "East")[i % 3],
        client_ip="10.0.0.1", user_agent="pytest", detail="instances", count=i, bytes_sent=1000 + i,
        occurred_at=T0 + timedelta(seconds=i),
    )
    defaults.update(values)
    return AuditEvent(**defaults)  # type: ignore[arg-type]


def fill(engine: Engine, n: int, batch: int = 250) -> None:
    for start in range(0, n, batch):
        append(engine, [sample(i) for i in range(start, min(n, start + batch))])
