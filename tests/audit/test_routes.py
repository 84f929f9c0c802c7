"""GET /audit and GET /audit/verify: filters, paging, formats, and who may read which records."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from dicomweb.index import db

from .app_util import make_app, records
from .conftest import fill

N = 30
AUDITOR = {"x-user": "auditor"}


@pytest.fixture
def client(engine: Engine, tmp_path: Path) -> TestClient:
    fill(engine, N)
    app, _ = make_app(engine, tmp_path, audit=False)
    return TestClient(app)


@pytest.fixture
def sqlite_client(tmp_path: Path) -> Iterator[TestClient]:
    """Parameter checks need no database variety."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'index.sqlite'}")
    db.upgrade(engine)
    app, _ = make_app(engine, tmp_path, audit=False)
    yield TestClient(app)
    engine.dispose()


def _ids(client: TestClient, query: str = "", headers: dict[str, str] | None = None) -> list[int]:
    response = client.get(f"/audit{query}", headers=headers or AUDITOR)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return [row["id"] for row in response.json()]


def test_filters_and_paging(client: TestClient) -> None:
    assert _ids(client) == list(range(1, N + 1))
    assert _ids(client, "?limit=5&offset=10") == [11, 12, 13, 14, 15]
    assert _ids(client, "?study=1.2.7") == [8]
    assert _ids(client, "?patient=P3") == [4, 14, 24]
    assert _ids(client, "?user=user1") == [i + 1 for i in range(N) if i % 4 == 1]
    assert _ids(client, "?action=store") == [i + 1 for i in range(N) if i % 3 == 2]
    assert _ids(client, "?outcome=denied") == []
    assert _ids(client, "?since=2024-05-01T08:00:10&until=2024-05-01T08:00:15") == [11, 12, 13, 14, 15]
    assert _ids(client, "?since=2024-05-01T10:00:10%2B02:00&until=2024-05-01T08:00:12Z") == [11, 12]
    assert _ids(client, "?user=user1&patient=P5") == [6, 26]


def test_record_fields(client: TestClient) -> None:
    [row] = client.get("/audit?study=1.2.7", headers=AUDITOR).json()
    assert row["occurred_at"] == "2024-05-01T08:00:07.123456Z"
    assert {k: row[k] for k in ("subject", "action", "institution", "count", "bytes_sent", "status")} == {
        "subject": "user3", "action": "retrieve", "institution": "South", "count": 7, "bytes_sent": 1007,
        "status": 200}
    assert len(row["hash"]) == 64 and len(row["prev_hash"]) == 64


@pytest.mark.parametrize(("query", "message"), [
    ("?since=yesterday", "since must be an ISO 8601 date or date-time, not 'yesterday'"),
    ("?limit=0", "limit must be between 1 and 1000, not 0"),
    ("?limit=1001", "limit must be between 1 and 1000, not 1001"),
    ("?offset=-1", "offset must be between 0 and 2147483647, not -1"),
    ("?limit=ten", "limit must be a whole number, not 'ten'"),
    ("?format=csv", "format must be one of json, fhir, dicom, not 'csv'"),
    ("?outcome=ok", "outcome must be one of success, denied, failure, login-failure, not 'ok'"),
    ("?user=a%00b", "query parameters must not contain NUL characters"),
])
def test_bad_parameters(sqlite_client: TestClient, query: str, message: str) -> None:
    response = sqlite_client.get(f"/audit{query}", headers=AUDITOR)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == message


def test_access(client: TestClient) -> None:
    assert client.get("/audit", headers={"x-user": "doctor"}).status_code == 403
    assert client.get("/audit/verify", headers={"x-user": "doctor"}).status_code == 403
    assert client.get("/audit").status_code == 401  # no principal and auth on
    north = [i + 1 for i in range(N) if i % 3 == 0 or i % 2 == 0]  # the study's or the principal's institution
    assert _ids(client, "?limit=1000", {"x-user": "north-admin"}) == north
    assert _ids(client, "?study=1.2.1", {"x-user": "north-admin"}) == []  # South did it, to an East study
    assert _ids(client, "?study=1.2.1") == [2]


def test_formats(client: TestClient) -> None:
    bundle = client.get("/audit?format=fhir&limit=4", headers=AUDITOR)
    assert bundle.headers["content-type"] == "application/fhir+json"
    document = bundle.json()
    assert (document["resourceType"], document["type"], document["total"]) == ("Bundle", "searchset", 4)
    assert [e["resource"]["id"] for e in document["entry"]] == ["1", "2", "3", "4"]
    xml = client.get("/audit?format=dicom&limit=4", headers=AUDITOR)
    assert xml.headers["content-type"] == "application/xml"
    root = ET.fromstring(xml.content)
    assert root.tag == "AuditMessages"
    assert [m.tag for m in root] == ["AuditMessage"] * 4


def test_verify(client: TestClient) -> None:
    response = client.get("/audit/verify", headers=AUDITOR)
    assert response.status_code == 200
    assert response.json() == {"ok": True, "checked": N, "first_broken_id": None, "broken_at": None, "reason": ""}
    assert client.get("/audit/verify", headers={"x-user": "north-admin"}).json()["ok"] is True


def test_reading_is_audited(engine: Engine, tmp_path: Path) -> None:
    fill(engine, 3)
    app, log = make_app(engine, tmp_path)
    TestClient(app).get("/audit?user=user1", headers=AUDITOR)
    assert log is not None and log.flush(10)
    [row] = records(engine, action="audit-read")
    assert (row["subject"], row["count"], row["query"], row["outcome"]) == ("auditor", 1, "user=user1", "success")
    log.close()


def test_json_body_is_a_list(client: TestClient) -> None:
    assert json.loads(client.get("/audit?limit=1", headers=AUDITOR).content)[0]["id"] == 1
