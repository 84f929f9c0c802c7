"""``dicomweb grants | care | research``: the policy records from the command line, acting as the system."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from ...cli_support import ConfigOption, DataOption, opened_index

if TYPE_CHECKING:
    from . import PolicyRecords

grants_app = typer.Typer(help="Access grants: a patient's grant, legal and supervised access, approvals.",
                         no_args_is_help=True)
care_app = typer.Typer(help="Care relationships: which doctor treats which patient where.", no_args_is_help=True)
research_app = typer.Typer(help="Research shares: studies an institution opens, de-identified, to its researchers.",
                           no_args_is_help=True)
console = Console(stderr=True, soft_wrap=True)  # messages stay on one line
out = Console(width=200)  # never cut UIDs or names
R = TypeVar("R")

LimitOption = Annotated[int, typer.Option(help="How many, newest first")]


class _Studies:
    """The system's permissions: every right; a study's institution read from the index."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def is_patient_of(self, principal: Any, study_uid: str) -> bool:
        return False

    def may_manage(self, principal: Any, capability: str, institution: str) -> bool:
        return True

    def study_institution(self, study_uid: str) -> str | None:
        from sqlalchemy import select

        from ...index.models import Study

        table = Study.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            row = conn.execute(select(table.c.institution_name).where(
                table.c.study_instance_uid == study_uid)).first()
        return None if row is None else str(row.institution_name)


@contextmanager
def _records(config: Path | None, data: Path | None) -> Iterator[PolicyRecords]:
    from . import PolicyRecords

    with opened_index(config, data) as (settings, engine):
        yield PolicyRecords(engine, _Studies(engine),
                            legal_max_days=int(getattr(settings, "legal_grant_max_days", 365)))


def _run(config: Path | None, data: Path | None, action: Callable[[PolicyRecords], R]) -> R:
    from .errors import RecordError

    with _records(config, data) as records:
        try:
            return action(records)
        except RecordError as exc:
            console.print(exc.detail, style="red", markup=False, highlight=False)
            raise typer.Exit(2 if exc.status == 400 else 1) from None


def _time(name: str, value: str | None) -> datetime | None:
    from .common import parse_time
    from .errors import RecordError

    try:
        return None if value is None else parse_time(name, value)
    except RecordError as exc:
        console.print(exc.detail, style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None


def _table(columns: tuple[str, ...], rows: list[dict[str, Any]], keys: tuple[str, ...]) -> None:
    from rich.table import Table

    table = Table(*columns)
    for row in rows:
        table.add_row(*("" if row[k] is None else str(row[k]) for k in keys))
    out.print(table)


def _system() -> Any:
    from ..principal import SYSTEM

    return SYSTEM


def _now() -> datetime:
    from ...index.models import utcnow

    return utcnow()


# -- grants ------------------------------------------------------------------------------------------------------
@grants_app.command("add")
def grants_add(
    kind: Annotated[str, typer.Option(help="patient, legal or supervised")],
    study: Annotated[str, typer.Option(help="Study Instance UID")],
    grantee: Annotated[str, typer.Option(help="The subject who gets access")],
    expires: Annotated[str | None, typer.Option(help="ISO 8601 expiry (required for legal)")] = None,
    reason: Annotated[str, typer.Option(help="Why (required for legal and supervised)")] = "",
    anonymized: Annotated[bool, typer.Option(help="De-identified access only (supervised)")] = False,
    data: DataOption = None,
    config: ConfigOption = None,
) -> None:
    """Create a grant (a patient grant is active at once; requests wait for their approvals)."""
    from .views import grant_json

    expires_at = _time("--expires", expires)
    found = _run(config, data, lambda r: grant_json(r.grants.create(
        _system(), kind, study, grantee=grantee, reason=reason, expires_at=expires_at, anonymized=anonymized),
        _now()))
    print(f"grant {found['id']}: {found['state']}"
          + (f", awaiting {' and '.join(found['awaiting'])} approval" if found["awaiting"] else ""))


@grants_app.command("list")
def grants_list(
    study: Annotated[str | None, typer.Option(help="Only this study's")] = None,
    grantee: Annotated[str | None, typer.Option(help="Only this subject's")] = None,
    kind: Annotated[str | None, typer.Option(help="patient, legal or supervised")] = None,
    state: Annotated[str | None, typer.Option(help="pending, active, expired or revoked")] = None,
    limit: LimitOption = 100,
    data: DataOption = None,
    config: ConfigOption = None,
) -> None:
    """The grants, newest first."""
    from .views import grant_json

    def read(r: PolicyRecords) -> list[dict[str, Any]]:
        now = _now()
        return [grant_json(g, now) for g in r.grants.list(_system(), study=study, grantee=grantee, kind=kind,
                                                          state=state, limit=limit, now=now)]

    _table(("id", "kind", "state", "study", "grantee", "requested by", "expires", "awaiting"),
           [dict(g, awaiting=", ".join(g["awaiting"])) for g in _run(config, data, read)],
           ("id", "kind", "state", "study", "grantee", "requestedBy", "expiresAt", "awaiting"))


@grants_app.command("approve")
def grants_approve(
    grant_id: Annotated[int, typer.Argument(metavar="ID", help="The grant")],
    side: Annotated[str, typer.Option("--as", help="patient, institution or supervisor")],
    data: DataOption = None,
    config: ConfigOption = None,
) -> None:
    """Give one approval of a legal or supervised request."""
    from .views import grant_json

    found = _run(config, data, lambda r: grant_json(r.grants.approve(_system(), grant_id, side), _now()))
    print(f"grant {grant_id}: {found['state']}"
          + (f", awaiting {' and '.join(found['awaiting'])} approval" if found["awaiting"] else ""))


@grants_app.command("revoke")
def grants_revoke(
    grant_id: Annotated[int, typer.Argument(metavar="ID", help="The grant")],
    reason: Annotated[str, typer.Option(help="Why (kept with the grant)")] = "revoked on the command line",
    data: DataOption = None,
    config: ConfigOption = None,
) -> None:
    """Revoke a grant, or refuse a request, for good."""
    _run(config, data, lambda r: r.grants.revoke(_system(), grant_id, reason))
    print(f"grant {grant_id}: revoked")


# -- care relationships -------------------------------------------------------------------------------------------
@care_app.command("add")
def care_add(
    doctor: Annotated[str, typer.Option(help="The doctor's subject")],
    patient_id: Annotated[str, typer.Option("--patient-id", help="The patient's PatientID")],
    institution: Annotated[str, typer.Option(help="Where the patient is treated")],
    department: Annotated[str, typer.Option(help="The department there")] = "",
    issuer: Annotated[str, typer.Option(help="Issuer of Patient ID (default: any)")] = "",
    valid_from: Annotated[str | None, typer.Option("--from", help="ISO 8601 start (default now)")] = None,
    valid_until: Annotated[str | None, typer.Option("--until", help="ISO 8601 end (default open)")] = None,
    data: DataOption = None,
    config: ConfigOption = None,
) -> None:
    """Record that a doctor treats a patient."""
    start, until = _time("--from", valid_from), _time("--until", valid_until)
    found = _run(config, data, lambda r: r.care.add(
        _system(), doctor=doctor, patient_id=patient_id, institution=institution, department=department,
        issuer=issuer, valid_from=start, valid_until=until))
    print(f"care relationship {found.id}")


@care_app.command("list")
def care_list(
    doctor: Annotated[str | None, typer.Option(help="Only this doctor's")] = None,
    patient_id: Annotated[str | None, typer.Option("--patient-id", help="Only this patient's")] = None,
    institution: Annotated[str | None, typer.Option(help="Only this institution's")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Also those ended or out of their validity")] = False,
    limit: LimitOption = 100,
    data: DataOption = None,
    config: ConfigOption = None,
) -> None:
    """The care relationships in force (all of them with --all), newest first."""
    from .views import care_json

    def read(r: PolicyRecords) -> list[dict[str, Any]]:
        now = _now()
        return [care_json(c, now) for c in r.care.list(_system(), doctor=doctor, patient_id=patient_id,
                                                       institution=institution, active=None if all_ else True,
                                                       limit=limit, now=now)]

    _table(("id", "active", "doctor", "patient", "issuer", "institution", "department", "from", "until", "ended"),
           _run(config, data, read), ("id", "active", "doctor", "patientId", "issuerOfPatientId", "institution",
                                      "department", "validFrom", "validUntil", "endedAt"))


@care_app.command("end")
def care_end(
    relationship_id: Annotated[int, typer.Argument(metavar="ID", help="The care relationship")],
    data: DataOption = None,
    config: ConfigOption = None,
) -> None:
    """End a care relationship now."""
    _run(config, data, lambda r: r.care.end(_system(), relationship_id))
    print(f"care relationship {relationship_id}: ended")


# -- research shares ----------------------------------------------------------------------------------------------
@research_app.command("share")
def research_share(
    study: Annotated[str, typer.Option(help="Study Instance UID")],
    institution: Annotated[str, typer.Option(help="Whose researchers see it (default: the study's institution)")] = "",
    reason: Annotated[str, typer.Option(help="Why (e.g. the research project)")] = "",
    data: DataOption = None,
    config: ConfigOption = None,
) -> None:
    """Share a study, de-identified, with an institution's researchers."""
    found = _run(config, data, lambda r: r.shares.share(_system(), study, institution=institution, reason=reason))
    print(f"research share {found.id}: {found.study_instance_uid} for {found.institution}")


@research_app.command("list")
def research_list(
    study: Annotated[str | None, typer.Option(help="Only this study's")] = None,
    institution: Annotated[str | None, typer.Option(help="Only this institution's")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Also revoked shares")] = False,
    limit: LimitOption = 100,
    data: DataOption = None,
    config: ConfigOption = None,
) -> None:
    """The active research shares (all of them with --all), newest first."""
    from .views import share_json

    found = _run(config, data, lambda r: [share_json(s) for s in r.shares.list(
        _system(), study=study, institution=institution, active=None if all_ else True, limit=limit)])
    _table(("id", "active", "study", "institution", "shared by", "created", "revoked"), found,
           ("id", "active", "study", "institution", "sharedBy", "createdAt", "revokedAt"))


@research_app.command("revoke")
def research_revoke(
    share_id: Annotated[int, typer.Argument(metavar="ID", help="The research share")],
    reason: Annotated[str, typer.Option(help="Why (kept with the share)")] = "",
    data: DataOption = None,
    config: ConfigOption = None,
) -> None:
    """Stop sharing a study for research."""
    _run(config, data, lambda r: r.shares.revoke(_system(), share_id, reason=reason))
    print(f"research share {share_id}: revoked")
