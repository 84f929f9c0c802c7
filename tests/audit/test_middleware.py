"""AuditMiddleware over a minimal app: one record per request with action, outcome, address and principal."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from dicomweb.audit.classify import Classified, classify, strip_secrets
from dicomweb.audit.log import AuditLog

from .app_util import make_app, records

FIELDS = ("action", "outcome", "status", "subject", "roles", "institution_of_principal", "client_ip", "method",
          "path", "query", "study_uid", "series_uid", "instance_uid", "patient_id", "institution", "detail", "count",
          "bytes_sent")


def _last(engine: Engine, log: AuditLog | None) -> dict[str, Any]:
    assert log is not None and log.flush(10)
    row = records(engine)[-1]
    return {k: row[k] for k in FIELDS}


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Engine:
    from dicomweb.index import db

    engine = db.make_engine(f"sqlite:///{tmp_path / 'index.sqlite'}")
    db.upgrade(engine)
    return engine


def test_requests_are_recorded(sqlite_engine: Engine, tmp_path: Path) -> None:
    app, log = make_app(sqlite_engine, tmp_path)
    client = TestClient(app)
    assert client.get("/dicom-web/studies?PatientID=P1&access_token=secret&limit=5",
                      headers={"x-user": "doctor", "x-ip": "192.0.2.7", "user-agent": "viewer/1"}).status_code == 200
    assert _last(sqlite_engine, log) == {
        "action": "query", "outcome": "success", "status": 200, "subject": "doctor", "roles": "chief,doctor",
        "institution_of_principal": "North", "client_ip": "192.0.2.7", "method": "GET", "path": "/dicom-web/studies",
        "query": "PatientID=P1&limit=5", "study_uid": "", "series_uid": "", "instance_uid": "", "patient_id": "",
        "institution": "", "detail": "studies", "count": 2, "bytes_sent": 7,
    }
    assert records(sqlite_engine)[-1]["user_agent"] == "viewer/1"

    client.get("/dicom-web/studies/1.2.3/metadata", headers={"x-user": "doctor"})
    row = _last(sqlite_engine, log)
    assert (row["action"], row["detail"], row["study_uid"], row["patient_id"], row["institution"], row["bytes_sent"],
            row["client_ip"]) == ("retrieve", "metadata", "1.2.3", "P1", "North", 1234, "testclient")

    assert client.get("/dicom-web/studies/1.2.9", headers={"x-user": "doctor"}).status_code == 404
    row = _last(sqlite_engine, log)
    assert (row["action"], row["outcome"], row["status"], row["study_uid"]) == ("retrieve", "denied", 404, "1.2.9")

    assert client.get("/dicom-web/studies/1/series/2/instances/3/frames/1,2",
                      headers={"x-user": "doctor"}).status_code == 403
    row = _last(sqlite_engine, log)
    assert (row["action"], row["detail"], row["outcome"], row["study_uid"], row["series_uid"],
            row["instance_uid"]) == ("retrieve", "frames", "denied", "1", "2", "3")

    client.post("/dicom-web/studies", content=b"abc", headers={"x-user": "doctor"})
    row = _last(sqlite_engine, log)
    assert (row["action"], row["outcome"], row["study_uid"], row["institution"]) == ("store", "success", "1.2.3",
                                                                                     "North")

    client.get("/wado?requestType=WADO&studyUID=1.2&seriesUID=1.2.3&objectUID=1.2.3.4", headers={"x-user": "doctor"})
    row = _last(sqlite_engine, log)
    assert (row["action"], row["detail"], row["study_uid"], row["series_uid"], row["instance_uid"]) == (
        "retrieve", "wado-uri", "1.2", "1.2.3", "1.2.3.4")
    log.close()  # type: ignore[union-attr]


def test_login_failure_without_principal(sqlite_engine: Engine, tmp_path: Path) -> None:
    app, log = make_app(sqlite_engine, tmp_path)
    response = TestClient(app).get("/dicom-web/studies", headers={"x-user": "bad-token", "x-ip": "203.0.113.5"})
    assert response.status_code == 401
    row = _last(sqlite_engine, log)
    assert (row["action"], row["outcome"], row["status"], row["subject"], row["client_ip"], row["detail"]) == (
        "login", "login-failure", 401, "", "203.0.113.5", "token expired")


def test_unaudited_requests_and_errors(sqlite_engine: Engine, tmp_path: Path) -> None:
    app, log = make_app(sqlite_engine, tmp_path)
    client = TestClient(app, raise_server_exceptions=False)
    client.get("/health")
    client.options("/dicom-web/studies")
    assert log is not None and log.flush(10)
    assert records(sqlite_engine) == []
    assert client.get("/boom", headers={"x-user": "doctor"}).status_code == 500
    row = _last(sqlite_engine, log)
    assert (row["action"], row["outcome"], row["status"], row["detail"]) == (
        "other", "failure", 500, "the server failed before answering")
    log.close()


def test_nothing_is_recorded_when_audit_is_off(sqlite_engine: Engine, tmp_path: Path) -> None:
    app, _ = make_app(sqlite_engine, tmp_path, audit=False)
    assert TestClient(app).get("/dicom-web/studies", headers={"x-user": "doctor"}).status_code == 200
    assert records(sqlite_engine) == []


async def _call(app: Any, receive: Any, send: Any) -> None:
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": "/stream", "raw_path": b"/stream", "query_string": b"",
             "root_path": "", "headers": [(b"x-user", b"doctor")], "client": ("198.51.100.1", 5000),
             "server": ("testserver", 80)}
    await app(scope, receive, send)


def test_client_disconnect_mid_download(sqlite_engine: Engine, tmp_path: Path) -> None:
    app, log = make_app(sqlite_engine, tmp_path)
    sent: list[int] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0.15)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append(len(message.get("body", b"")))

    async def run() -> None:
        async with app.router.lifespan_context(app):
            pass
        await _call(app, receive, send)

    anyio.run(run)
    row = _last(sqlite_engine, log)
    assert (row["outcome"], row["status"], row["client_ip"], row["subject"]) == ("failure", 200, "198.51.100.1",
                                                                               "doctor")
    assert 0 < row["bytes_sent"] < 10_000
    assert row["detail"] == f"client disconnected after {row['bytes_sent']} bytes"


def test_client_gone_while_sending(sqlite_engine: Engine, tmp_path: Path) -> None:
    app, log = make_app(sqlite_engine, tmp_path)
    chunks = 0

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(60)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal chunks
        if message["type"] == "http.response.body":
            chunks += 1
            if chunks == 3:
                raise OSError("broken pipe")

    async def run() -> None:
        try:
            await _call(app, receive, send)
        except OSError:
            pass

    anyio.run(run)
    row = _last(sqlite_engine, log)
    assert (row["outcome"], row["bytes_sent"], row["detail"]) == ("failure", 200, "client disconnected after 200 bytes")


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("GET", "/dicom-web/studies", Classified("query", "studies")),
    ("GET", "/dicom-web/series", Classified("query", "series")),
    ("GET", "/dicom-web/studies/1/series", Classified("query", "series", study="1")),
    ("GET", "/dicom-web/studies/1/series/2/instances", Classified("query", "instances", study="1", series="2")),
    ("HEAD", "/dicom-web/studies/1", Classified("retrieve", "instances", study="1")),
    ("GET", "/dicom-web/studies/1/series/2/metadata", Classified("retrieve", "metadata", study="1", series="2")),
    ("GET", "/dicom-web/studies/1/rendered", Classified("retrieve", "rendered", study="1")),
    ("GET", "/dicom-web/studies/1/series/2/instances/3/frames/1/rendered",
     Classified("retrieve", "rendered", study="1", series="2", instance="3")),
    ("GET", "/dicom-web/studies/1/series/2/instances/3/frames/1/thumbnail",
     Classified("retrieve", "thumbnail", study="1", series="2", instance="3")),
    ("GET", "/dicom-web/studies/1/series/2/instances/3/bulkdata/x/7fe00010",
     Classified("retrieve", "bulkdata", study="1", series="2", instance="3")),
    ("POST", "/dicom-web/studies/1", Classified("store", study="1")),
    ("DELETE", "/dicom-web/studies/1/series/2", Classified("delete", study="1", series="2")),
    ("POST", "/auth/token", Classified("login")),
    ("POST", "/admin/grants", Classified("policy-change", "grants")),
    ("DELETE", "/admin/grants/7", Classified("policy-change", "grants")),
    ("PUT", "/admin/policy/rules", Classified("policy-change", "policy")),
    ("GET", "/admin/grants", Classified("policy-read", "grants")),
    ("GET", "/audit", Classified("audit-read")),
    ("GET", "/audit/verify", Classified("audit-read", "verify")),
    ("POST", "/admin/jobs/4/retry", Classified("admin", "jobs/4/retry")),
    ("GET", "/worklist/items", Classified("other")),
])
def test_classify(method: str, path: str, expected: Classified) -> None:
    assert classify(method, path, "/dicom-web") == expected


def test_secrets_leave_the_query() -> None:
    assert strip_secrets("a=1&access_token=x&Access_Token=y&b=2&password=z") == "a=1&b=2"
