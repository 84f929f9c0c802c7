"""``dicomweb audit``: verify the hash chain, list records, export them as DICOM audit messages or FHIR."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy.engine import Engine

from ..cli_support import ConfigOption, DataOption, settings_or_exit
from ..index import db
from ..policies.principal import SYSTEM
from .chain import verify
from .dicom_xml import write_audit_messages
from .event import AuditEvent, format_time
from .fhir import write_bundle
from .log import write_now
from .query import AuditFilter, as_json, iterate, parse_time, search

audit_app = typer.Typer(help="The audit log: verify its hash chain, list and export records.", no_args_is_help=True)
console = Console(stderr=True)

StudyOption = Annotated[str, typer.Option("--study", help="Study Instance UID")]
PatientOption = Annotated[str, typer.Option("--patient", help="Patient ID")]
UserOption = Annotated[str, typer.Option("--user", help="The principal's subject")]
ActionOption = Annotated[str, typer.Option("--action", help="query, retrieve, store, delete, login, ...")]
SinceOption = Annotated[str, typer.Option("--since", help="ISO 8601 date or date-time (inclusive; UTC if no offset)")]
UntilOption = Annotated[str, typer.Option("--until", help="ISO 8601 date or date-time (exclusive)")]


def _engine(config: Path | None, data: Path | None) -> tuple[Engine, str]:
    settings = settings_or_exit(config, data)
    engine = db.make_engine(settings.resolved_database_url)
    db.upgrade(engine)
    return engine, settings.dimse_ae_title or "dicomweb"


def _filter(study: str, patient: str, user: str, action: str, since: str, until: str) -> AuditFilter:
    try:
        return AuditFilter(study=study, patient=patient, user=user, action=action,
                           since=parse_time(since, "--since") if since else None,
                           until=parse_time(until, "--until") if until else None)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _note_use(engine: Engine, what: str, count: int) -> None:
    # Reading the audit log is itself audited (DCM 110101 Audit Log Used).
    write_now(engine, AuditEvent.for_principal(SYSTEM, "audit-read", detail=f"cli: {what}", count=count))


@audit_app.command("verify")
def verify_command(data: DataOption = None, config: ConfigOption = None) -> None:
    """Recompute the hash chain; exit 1 naming the first broken record."""
    engine, _ = _engine(config, data)
    try:
        report = verify(engine)
    finally:
        engine.dispose()
    if report.ok:
        typer.echo(f"audit chain ok: {report.checked} records")
        return
    when = f" ({format_time(report.broken_at)})" if report.broken_at else ""
    typer.echo(f"audit chain BROKEN at record {report.first_broken_id}{when}: {report.reason}; "
               f"{report.checked} records before it are intact")
    raise typer.Exit(1)


@audit_app.command("list")
def list_command(
    study: StudyOption = "", patient: PatientOption = "", user: UserOption = "", action: ActionOption = "",
    since: SinceOption = "", until: UntilOption = "",
    limit: Annotated[int, typer.Option("--limit", min=1, help="Most records shown (oldest first)")] = 100,
    as_json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
    data: DataOption = None, config: ConfigOption = None,
) -> None:
    """List audit records, oldest first."""
    engine, _ = _engine(config, data)
    try:
        rows = search(engine, _filter(study, patient, user, action, since, until), limit=limit)
        for row in rows:
            if as_json_lines:
                typer.echo(json.dumps(as_json(row), ensure_ascii=False))
            else:
                typer.echo("  ".join([
                    str(row["id"]), format_time(row["occurred_at"]), row["subject"] or "-", row["roles"] or "-",
                    row["action"], row["outcome"], str(row["status"] or "-"), row["client_ip"] or "-",
                    row["study_uid"] or "-", row["detail"] or "-"]))
        _note_use(engine, "list", len(rows))
    finally:
        engine.dispose()


@audit_app.command("export")
def export_command(
    fmt: Annotated[str, typer.Option("--format", help="dicom (PS3.15 A.5 audit messages) or fhir (R4 Bundle)")],
    study: StudyOption = "", patient: PatientOption = "", user: UserOption = "", action: ActionOption = "",
    since: SinceOption = "", until: UntilOption = "",
    output: Annotated[Path | None, typer.Option("--output", help="File to write (default: standard output)")] = None,
    data: DataOption = None, config: ConfigOption = None,
) -> None:
    """Export matching audit records as one XML document of DICOM audit messages or a FHIR Bundle."""
    if fmt not in ("dicom", "fhir"):
        console.print(f"[red]--format must be dicom or fhir, not {fmt!r}[/red]")
        raise typer.Exit(2)
    where = _filter(study, patient, user, action, since, until)
    engine, source = _engine(config, data)
    try:
        target = open(output, "wb") if output else nullcontext(sys.stdout.buffer)
        with target as stream:
            writer = write_audit_messages if fmt == "dicom" else write_bundle
            count = writer(iterate(engine, where), stream, source)  # type: ignore[arg-type]
        console.print(f"exported {count} audit records" + (f" to {output}" if output else ""))
        _note_use(engine, f"export {fmt}", count)
    finally:
        engine.dispose()
