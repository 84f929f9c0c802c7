"""Policy records tests: an upgraded index on SQLite and PostgreSQL, a fake Permissions, fixed principals."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from dicomweb.http.problems import HTTPProblem, from_exception
from dicomweb.index import db
from dicomweb.policies.principal import SYSTEM, NationalId, Principal
from dicomweb.policies.records import PolicyRecords
from dicomweb.policies.records.routes import policy_routes

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
NORTH_STUDY, SOUTH_STUDY, BARE_STUDY, MISSING_STUDY = "1.2.3.1", "1.2.3.2", "1.2.3.3", "1.2.3.9"

PATIENT = Principal("pat-1", frozenset({"patient"}), national_ids=(NationalId("P1"),))
OTHER_PATIENT = Principal("pat-2", frozenset({"patient"}), national_ids=(NationalId("P2"),))
DOCTOR = Principal("doc-1", frozenset({"doctor"}), institution="North", department="Cardio")
DOCTOR2 = Principal("doc-2", frozenset({"doctor"}), institution="North", department="Cardio")
LAWYER = Principal("law-1", frozenset({"lawyer"}))
COURT = Principal("court-1", frozenset({"court"}))
NORTH_ADMIN = Principal("ia-north", frozenset({"institution_admin"}), institution="North")
SOUTH_ADMIN = Principal("ia-south", frozenset({"institution_admin"}), institution="South")
CHIEF = Principal("chief-north", frozenset({"chief"}), institution="North", department="Cardio")
RESEARCHER = Principal("res-1", frozenset({"researcher"}), institution="North")
ADMIN = Principal("root", frozenset({"admin"}))
EVERYONE = {p.subject: p for p in (PATIENT, OTHER_PATIENT, DOCTOR, DOCTOR2, LAWYER, COURT, NORTH_ADMIN, SOUTH_ADMIN,
                                   CHIEF, RESEARCHER, ADMIN, SYSTEM)}
ALL_RIGHTS = ("care", "research_share", "approve_legal", "supervise", "grants_read")


@dataclass
class FakePermissions:
    """The policy engine's answers, as plain tables."""

    studies: dict[str, str] = field(default_factory=lambda: {NORTH_STUDY: "North", SOUTH_STUDY: "South",
                                                             BARE_STUDY: ""})
    patients: dict[str, str] = field(default_factory=lambda: {NORTH_STUDY: "pat-1", SOUTH_STUDY: "pat-2",
                                                              BARE_STUDY: "pat-1"})
    rights: set[tuple[str, str, str]] = field(default_factory=lambda: {
        *(("ia-north", r, "North") for r in ALL_RIGHTS), *(("ia-south", r, "South") for r in ALL_RIGHTS),
        ("chief-north", "care", "North"), ("chief-north", "supervise", "North"),
    })

    def is_patient_of(self, principal: Principal, study_uid: str) -> bool:
        return self.patients.get(study_uid) == principal.subject

    def study_institution(self, study_uid: str) -> str | None:
        return self.studies.get(study_uid)

    def may_manage(self, principal: Principal, capability: str, institution: str) -> bool:
        return principal.is_system or "admin" in principal.roles or (
            (principal.subject, capability, institution) in self.rights)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def permissions() -> FakePermissions:
    return FakePermissions()


@pytest.fixture
def records(engine: Engine, permissions: FakePermissions) -> PolicyRecords:
    return PolicyRecords(engine, permissions, legal_max_days=365)


class AsPrincipal:
    """Puts the principal the request's ``X-Test-Principal`` header names into the scope (none: anonymous)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            name = dict(scope["headers"]).get(b"x-test-principal")
            if name is not None:
                scope["principal"] = EVERYONE[name.decode()]
            scope["dicomweb.audit"] = {}
            scope["app"].state.audits.append(scope["dicomweb.audit"])
        await self.app(scope, receive, send)


async def _problem(request: object, exc: Exception) -> object:
    assert isinstance(exc, HTTPProblem)
    return from_exception(exc)


def make_app(engine: Engine, permissions: FakePermissions, auth: str = "on") -> Starlette:
    app = Starlette(routes=policy_routes(), exception_handlers={HTTPProblem: _problem})  # type: ignore[dict-item]
    app.add_middleware(AsPrincipal)
    app.state.archive = SimpleNamespace(engine=engine, settings=SimpleNamespace(auth=auth, legal_grant_max_days=365))
    app.state.policy = permissions
    app.state.audits = []  # each request's audit notes, in order
    return app


def add_study(engine: Engine, uid: str, patient_id: str, institution: str, issuer: str = "") -> None:
    """A bare patient and study row, enough for the policy engine's predicates."""
    from sqlmodel import Session, select

    from dicomweb.index.models import Patient, Study

    with Session(engine) as s, s.begin():
        key = f"{issuer}|{patient_id}"
        patient = s.exec(select(Patient).where(Patient.patient_key == key)).first()
        if patient is None:
            patient = Patient(patient_key=key, patient_id=patient_id, issuer_of_patient_id=issuer)
            s.add(patient)
            s.flush()
        assert patient.id is not None
        s.add(Study(study_instance_uid=uid, patient_fk=patient.id, institution_name=institution))
