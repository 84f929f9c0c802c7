"""``dicomweb grants | care | research`` on a data folder's SQLite index, acting as the system."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from dicomweb.cli import app
from dicomweb.index import db
from dicomweb.settings import load_settings
from tests.records.conftest import add_study

STUDY, BARE = "1.2.826.0.9.1", "1.2.826.0.9.2"
runner = CliRunner()


def run(data: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--data", str(data)])
    return result.exit_code, result.output


def prepared(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    engine = db.make_engine(load_settings(None, data_dir=data).resolved_database_url)
    db.upgrade(engine)
    add_study(engine, STUDY, "P1", "North")
    add_study(engine, BARE, "P2", "")
    engine.dispose()
    return data


def test_grants_commands(tmp_path: Path) -> None:
    data = prepared(tmp_path)
    assert run(data, "grants", "add", "--kind", "patient", "--study", STUDY, "--grantee", "doc-1") == (
        0, "grant 1: active\n")
    soon = (datetime.now(UTC) + timedelta(days=10)).isoformat()
    assert run(data, "grants", "add", "--kind", "legal", "--study", STUDY, "--grantee", "law-1", "--expires", soon,
               "--reason", "case 17") == (0, "grant 2: pending, awaiting patient and institution approval\n")
    assert run(data, "grants", "approve", "2", "--as", "institution") == (
        0, "grant 2: pending, awaiting patient approval\n")
    assert run(data, "grants", "approve", "2", "--as", "patient") == (0, "grant 2: active\n")
    assert run(data, "grants", "approve", "2", "--as", "patient") == (1, "grant 2 already has its patient approval\n")
    code, listing = run(data, "grants", "list", "--grantee", "law-1")
    assert code == 0 and "law-1" in listing and "doc-1" not in listing and "active" in listing
    assert run(data, "grants", "revoke", "1") == (0, "grant 1: revoked\n")
    code, output = run(data, "grants", "revoke", "1")
    assert code == 1 and output.startswith("grant 1 was revoked at ")
    code, listing = run(data, "grants", "list", "--state", "revoked")
    assert code == 0 and "doc-1" in listing and "law-1" not in listing
    # Mistakes: unknown study (1), bad input (2).
    assert run(data, "grants", "add", "--kind", "patient", "--study", "1.2.3.4", "--grantee", "d") == (
        1, "there is no study 1.2.3.4\n")
    assert run(data, "grants", "add", "--kind", "friend", "--study", STUDY, "--grantee", "d") == (
        2, "kind must be one of patient, legal, supervised, not 'friend'\n")
    assert run(data, "grants", "add", "--kind", "legal", "--study", STUDY, "--grantee", "d", "--expires", "soon",
               "--reason", "x") == (2, "--expires must be an ISO 8601 date and time, e.g. 2030-01-31T12:00:00Z\n")
    assert run(data, "grants", "approve", "9", "--as", "patient") == (1, "there is no grant 9\n")


def test_care_commands(tmp_path: Path) -> None:
    data = prepared(tmp_path)
    assert run(data, "care", "add", "--doctor", "doc-1", "--patient-id", "P1", "--institution", "North",
               "--department", "Cardio") == (0, "care relationship 1\n")
    assert run(data, "care", "add", "--doctor", "doc-2", "--patient-id", "P1", "--issuer", "NAT",
               "--institution", "North", "--department", "Cardio", "--until", "2000-01-01T00:00:00Z") == (
        2, "validUntil must be after validFrom\n")
    code, listing = run(data, "care", "list")
    assert code == 0 and "doc-1" in listing and "Cardio" in listing
    assert run(data, "care", "end", "1") == (0, "care relationship 1: ended\n")
    assert run(data, "care", "end", "1") == (1, "care relationship 1 has already ended\n")
    assert "doc-1" not in run(data, "care", "list")[1]
    assert "doc-1" in run(data, "care", "list", "--all")[1]


def test_research_commands(tmp_path: Path) -> None:
    data = prepared(tmp_path)
    assert run(data, "research", "share", "--study", STUDY) == (0, f"research share 1: {STUDY} for North\n")
    assert run(data, "research", "share", "--study", STUDY, "--institution", "North") == (
        1, "research share 1 already shares this study with 'North'\n")
    assert run(data, "research", "share", "--study", BARE) == (
        2, "institution is required: the study names no institution\n")
    assert run(data, "research", "share", "--study", BARE, "--institution", "Lab") == (
        0, f"research share 2: {BARE} for Lab\n")
    code, listing = run(data, "research", "list", "--institution", "Lab")
    assert code == 0 and BARE in listing and STUDY not in listing
    assert run(data, "research", "revoke", "1") == (0, "research share 1: revoked\n")
    assert run(data, "research", "revoke", "1") == (1, "research share 1 was already revoked\n")
    assert STUDY not in run(data, "research", "list")[1]
    assert STUDY in run(data, "research", "list", "--all")[1]
