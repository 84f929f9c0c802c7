"""Stores are limited to the institutions a role may write; every access lands in the audit log with the
caller's address (X-Forwarded-For believed from a trusted proxy only); auditors read the log by scope."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from io import BytesIO
from typing import Any

import httpx
import pydicom

from dicomweb.app import create_app
from tests.multipart_util import stow_body
from tests.policies.conftest import World
from tests.policies.fixture_archive import BY_KEY, CC, GH, instance_bytes

NOT_AUTHORIZED = 0x0124


def _new_instance(institution: str, number: int) -> bytes:
    ds = pydicom.dcmread(BytesIO(instance_bytes(BY_KEY["S1"], 0, 0)))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.10.1137.9.{number}"
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.10.1137.8.{number}"
    ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.10.1137.7.{number}"
    ds.InstitutionName = institution
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _stow(world: World, user: str, data: bytes) -> Any:
    content_type, body = stow_body([data])
    return world.call(user, "POST", "/dicom-web/studies", content=body,
                      headers={"Content-Type": content_type, "Accept": "application/dicom+json"})


def test_stores_only_into_institutions_the_role_may_write(world: World) -> None:
    refused = _stow(world, "radiologist", _new_instance(CC, 1))
    assert refused.status_code == 409
    failed = refused.json()["00081198"]["Value"][0]
    assert failed["00081197"]["Value"] == [NOT_AUTHORIZED]
    stored = _stow(world, "radiologist", _new_instance(GH, 2))
    assert stored.status_code == 200, stored.text
    assert _stow(world, "patient1", _new_instance(GH, 3)).status_code == 403
    assert _stow(world, "admin", _new_instance(CC, 4)).status_code == 200


def _through_proxy(world: World, settings_overrides: dict[str, Any]) -> httpx.AsyncClient:
    settings = replace(world.settings, **settings_overrides)
    app = create_app(settings, world.archive)
    transport = httpx.ASGITransport(app=app, client=("10.0.0.5", 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://archive.test")


def test_every_access_is_audited_with_the_client_address(world: World) -> None:
    hidden = BY_KEY["S5"].uid
    marker = "203.0.113.77"

    async def scenario() -> Any:
        async with _through_proxy(world, {"trusted_proxies": ("10.0.0.0/8",)}) as client:
            token = {"Authorization": f"Bearer {world.tokens['patient1']}", "X-Forwarded-For": marker}
            assert (await client.get("/dicom-web/studies", headers=token)).status_code == 200
            assert (await client.get(f"/dicom-web/studies/{hidden}/metadata", headers=token)).status_code == 404
            bad = await client.get("/dicom-web/studies", headers={"Authorization": "Bearer x.y.z",
                                                                    "X-Forwarded-For": marker})
            assert bad.status_code == 401
            client._transport.app.state.audit.flush()  # type: ignore[attr-defined]
        async with _through_proxy(world, {}) as untrusted:
            spoof = {"Authorization": f"Bearer {world.tokens['patient1']}", "X-Forwarded-For": "198.51.100.1"}
            assert (await untrusted.get("/dicom-web/studies", headers=spoof)).status_code == 200
            untrusted._transport.app.state.audit.flush()  # type: ignore[attr-defined]

    since = datetime.now(UTC).isoformat()
    asyncio.run(scenario())
    records = world.call("auditor", "GET", "/audit", params={"limit": "1000", "since": since}).json()
    mine = [r for r in records if r["client_ip"] == marker]
    assert {(r["subject"], r["action"], r["outcome"]) for r in mine} >= {
        ("patient1", "query", "success"), ("patient1", "retrieve", "denied"), ("", "login", "login-failure")}
    denied = next(r for r in mine if r["outcome"] == "denied")
    assert denied["study_uid"] == hidden
    assert any(r["client_ip"] == "10.0.0.5" for r in records)  # an untrusted peer's header is ignored
    assert not any(r["client_ip"] == "198.51.100.1" for r in records)


def test_audit_is_read_by_scope(world: World) -> None:
    since = datetime.now(UTC).isoformat()
    world.call("radiologist", "GET", f"/dicom-web/studies/{BY_KEY['S1'].uid}/metadata")
    world.call("admin", "GET", f"/dicom-web/studies/{BY_KEY['S5'].uid}/metadata")
    world.client.app.state.audit.flush()  # type: ignore[attr-defined]
    assert world.call("doctor_a", "GET", "/audit").status_code == 403
    institution_view = world.call("gh_admin", "GET", "/audit", params={"limit": "1000", "since": since}).json()
    assert institution_view and all(GH in (r["institution"], r["institution_of_principal"])
                                    for r in institution_view)
    assert any(r["study_uid"] == BY_KEY["S1"].uid for r in institution_view)
    assert not any(r["study_uid"] == BY_KEY["S5"].uid for r in institution_view)
    verified = world.call("auditor", "GET", "/audit/verify").json()
    assert verified["ok"] is True
    fhir = world.call("auditor", "GET", "/audit", params={"format": "fhir", "study": BY_KEY["S1"].uid}).json()
    assert fhir["resourceType"] == "Bundle" and fhir["entry"]
    assert all(e["resource"]["resourceType"] == "AuditEvent" for e in fhir["entry"])


