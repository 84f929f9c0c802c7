"""One archive with authorization on, the fixed studies of ``fixture_archive``, users of every role and the
care, grant and research records the matrix needs - plus an empty archive whose answers for the same URLs show
what "does not exist" looks like."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from dicomweb.app import create_app
from dicomweb.archive import Archive
from dicomweb.policies.identity.issuer import mint_token
from dicomweb.policies.identity.users import add_user
from dicomweb.settings import Settings, load_settings
from tests.policies.fixture_archive import CC, GH, all_instances

# name: roles, institution, department, national id (issuer NATIONAL)
USERS: dict[str, tuple[tuple[str, ...], str, str, str]] = {
    "admin": (("admin",), "", "", ""),
    "patient1": (("patient",), "", "", "NID-1"),
    "patient3": (("patient",), "", "", "NID-3"),
    "doctor_a": (("doctor",), GH, "cardiology", ""),
    "chief": (("chief",), GH, "cardiology", ""),
    "radiologist": (("radiologist",), GH, "radiology", ""),
    "researcher": (("researcher",), GH, "", ""),
    "lawyer": (("lawyer",), "", "", ""),
    "outsider": (("doctor",), CC, "surgery", ""),
    "gh_admin": (("institution_admin",), GH, "", ""),
    "auditor": (("auditor",), "", "", ""),
}


@dataclass
class World:
    settings: Settings
    archive: Archive
    client: TestClient
    empty: TestClient
    tokens: dict[str, str]
    empty_admin: str

    def as_(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def call(self, user: str, method: str, url: str, **kwargs: Any) -> Any:
        headers = {**self.as_(user), **kwargs.pop("headers", {})}
        return self.client.request(method, url, headers=headers, **kwargs)

    def absent(self, method: str, url: str, **kwargs: Any) -> Any:
        """The answer for ``url`` from an archive that holds nothing (asked by its admin)."""
        headers = {"Authorization": f"Bearer {self.empty_admin}", **kwargs.pop("headers", {})}
        return self.empty.request(method, url, headers=headers, **kwargs)


def _open(root: Path) -> tuple[Settings, Archive, TestClient]:
    settings = load_settings(data_dir=root, auth="on", ingest_processes=0, fsync=False)
    archive = Archive.open(settings)
    client = TestClient(create_app(settings, archive), base_url="http://archive.test")
    client.__enter__()
    return settings, archive, client


def _ok(response: Any) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("policy")
    settings, archive, client = _open(root / "archive")
    for index, (_, _, _, data) in enumerate(all_instances()):
        path = root / f"in{index}.dcm"
        path.write_bytes(data)
        result = archive.ingest.store(archive.stage_file(path))
        assert result.outcome == "stored", result.message
    for name, (roles, institution, department, nid) in USERS.items():
        add_user(archive.engine, name, roles=list(roles), password=None, institution=institution,
                 department=department, national_id=nid, national_id_issuer="NATIONAL" if nid else "")
    tokens = {name: mint_token(settings, archive.engine, name) for name in USERS}
    empty_settings, empty_archive, empty = _open(root / "empty")
    add_user(empty_archive.engine, "admin", roles=["admin"], password=None)
    world = World(settings, archive, client, empty, tokens, mint_token(empty_settings, empty_archive.engine, "admin"))
    _records(world)
    yield world
    client.__exit__(None, None, None)
    empty.__exit__(None, None, None)
    archive.close()
    empty_archive.close()


def _records(world: World) -> None:
    from tests.policies.fixture_archive import BY_KEY

    s = {key: spec.uid for key, spec in BY_KEY.items()}
    _ok(world.call("admin", "POST", "/admin/care-relationships", json={
        "doctor": "doctor_a", "patientId": "NID-2", "issuerOfPatientId": "NATIONAL", "institution": GH,
        "department": "cardiology"}))
    _ok(world.call("patient1", "POST", "/admin/grants",
                   json={"kind": "patient", "study": s["S2"], "grantee": "doctor_a"}))
    for study in ("S1", "S3"):
        _ok(world.call("gh_admin", "POST", "/admin/research-shares", json={"study": s[study], "institution": GH}))
    _ok(world.call("admin", "POST", "/admin/research-shares", json={"study": s["S5"], "institution": CC}))
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    legal = _ok(world.call("lawyer", "POST", "/admin/grants", json={
        "kind": "legal", "study": s["S4"], "reason": "court order 17/2026", "expiresAt": expires}))
    _ok(world.call("patient3", "POST", f"/admin/grants/{legal['id']}/approve", json={"as": "patient"}))
    _ok(world.call("gh_admin", "POST", f"/admin/grants/{legal['id']}/approve", json={"as": "institution"}))
    _ok(world.call("lawyer", "POST", "/admin/grants", json={
        "kind": "legal", "study": s["S5"], "reason": "pending request", "expiresAt": expires}))
