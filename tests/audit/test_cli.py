"""``dicomweb audit verify|list|export`` on an archive's index."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from dicomweb.cli import app
from dicomweb.index import db

from .conftest import fill

runner = CliRunner()


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Engine]]:
    monkeypatch.delenv("DICOMWEB_DATABASE_URL", raising=False)
    monkeypatch.delenv("DICOMWEB_CONFIG", raising=False)
    folder = tmp_path / "data"
    engine = db.make_engine(f"sqlite:///{(folder / 'index.sqlite').resolve()}")
    db.upgrade(engine)
    fill(engine, 20)
    yield folder, engine
    engine.dispose()


def test_verify_ok_and_broken(data: tuple[Path, Engine]) -> None:
    folder, engine = data
    result = runner.invoke(app, ["audit", "verify", "--data", str(folder)])
    assert (result.exit_code, result.output) == (0, "audit chain ok: 20 records\n")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_event SET subject = 'mallory' WHERE id = 12"))
    result = runner.invoke(app, ["audit", "verify", "--data", str(folder)])
    assert result.exit_code == 1
    assert result.output.startswith("audit chain BROKEN at record 12 (2024-05-01T08:00:11.123456Z): its contents "
                                    "do not match its hash")
    assert result.output.endswith("; 11 records before it are intact\n")


def test_list_filters_and_is_audited(data: tuple[Path, Engine]) -> None:
    folder, engine = data
    result = runner.invoke(app, ["audit", "list", "--data", str(folder), "--patient", "P3", "--json"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in result.output.splitlines()] == [4, 14]
    result = runner.invoke(app, ["audit", "list", "--data", str(folder), "--user", "user2", "--limit", "2"])
    assert [line.split("  ")[:3] for line in result.output.splitlines()] == [
        ["3", "2024-05-01T08:00:02.123456Z", "user2"], ["7", "2024-05-01T08:00:06.123456Z", "user2"]]
    with engine.connect() as conn:
        used = conn.execute(sa.text("SELECT subject, action, detail, count FROM audit_event WHERE id > 20")).all()
    assert [tuple(r) for r in used] == [("system", "audit-read", "cli: list", 2), ("system", "audit-read",
                                                                                  "cli: list", 2)]
    assert runner.invoke(app, ["audit", "verify", "--data", str(folder)]).exit_code == 0
    bad = runner.invoke(app, ["audit", "list", "--data", str(folder), "--since", "soon"])
    assert bad.exit_code == 2


def test_export(data: tuple[Path, Engine], tmp_path: Path) -> None:
    folder, _ = data
    out = tmp_path / "audit.xml"
    result = runner.invoke(app, ["audit", "export", "--format", "dicom", "--data", str(folder), "--study", "1.2.5",
                                 "--output", str(out)])
    assert result.exit_code == 0, result.output
    root = ET.parse(out).getroot()
    assert [m.find("ParticipantObjectIdentification").attrib["ParticipantObjectID"]  # type: ignore[union-attr]
            for m in root] == ["1.2.5"]
    fhir = tmp_path / "audit.json"
    result = runner.invoke(app, ["audit", "export", "--format", "fhir", "--data", str(folder), "--since",
                                 "2024-05-01T08:00:15", "--until", "2024-05-02", "--output", str(fhir)])
    bundle = json.loads(fhir.read_text())
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["16", "17", "18", "19", "20"]
    assert runner.invoke(app, ["audit", "export", "--format", "csv", "--data", str(folder)]).exit_code == 2
