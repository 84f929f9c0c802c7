"""AuthMiddleware over a minimal starlette app: 401 challenges, public paths, the client address, the cache."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from dicomweb.index import db
from dicomweb.policies.identity import (
    EMBEDDED_ISSUER,
    AuthMiddleware,
    add_user,
    auth_routes,
    build_authenticator,
    client_address,
    mint_token,
    remove_user,
)
from dicomweb.policies.identity.authenticator import Authenticator
from dicomweb.policies.identity.middleware import proxy_networks
from dicomweb.settings import Settings, load_settings

from .conftest import TestKey, claims


async def whoami(request: Request) -> Response:
    principal = request.scope.get("principal")
    return JSONResponse({"subject": principal.subject if principal else None,
                         "roles": sorted(principal.roles) if principal else None,
                         "client_ip": request.scope["client_ip"]})


class RecordAudit:
    """Stands in for the audit middleware: makes the dict, keeps what the inner layers left in it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.records: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["dicomweb.audit"] = {}
            self.records.append(scope["dicomweb.audit"])
        await self.app(scope, receive, send)


class Harness:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.authenticator: Authenticator = build_authenticator(settings, engine)
        app = Starlette(routes=[Route("/dicom-web/studies", whoami, methods=["GET", "POST"]),
                                Route("/health", whoami), Route("/openapi.json", whoami), *auth_routes()],
                        middleware=[Middleware(RecordAudit), Middleware(AuthMiddleware)])
        app.state.authenticator = self.authenticator
        app.state.archive = SimpleNamespace(engine=engine, settings=settings)
        self.app = app

    def client(self, peer: str = "127.0.0.1") -> TestClient:
        return TestClient(self.app, client=(peer, 40000))

    @property
    def audit(self) -> list[dict[str, Any]]:
        """What the requests so far left for the audit record."""
        layer: Any = self.app.middleware_stack
        while not isinstance(layer, RecordAudit):
            layer = layer.app
        return layer.records


def harness_for(tmp_path: Path, **overrides: Any) -> Iterator[Harness]:
    settings = load_settings(None, data_dir=tmp_path / "data", **{"auth": "on", **overrides})
    engine = db.make_engine(settings.resolved_database_url)
    db.upgrade(engine)
    add_user(engine, "alice", roles=["doctor"], password="correct horse", institution="General Hospital",
             national_id="12345678", national_id_issuer="NATIONAL", name="Smith^Alice")
    try:
        yield Harness(settings, engine)
    finally:
        engine.dispose()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    yield from harness_for(tmp_path, trusted_proxies="10.0.0.0/8, 2001:db8::/32")


def test_missing_token_is_401_with_a_bare_challenge(harness: Harness) -> None:
    with harness.client() as client:
        response = client.get("/dicom-web/studies")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="dicomweb"'
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {"type": "about:blank", "title": "Unauthorized", "status": 401,
                               "detail": "this request needs a bearer token (Authorization: Bearer ...)"}
    assert harness.audit == [{"action": "login",
                              "detail": "this request needs a bearer token (Authorization: Bearer ...)"}]


def test_other_scheme_counts_as_no_token(harness: Harness) -> None:
    with harness.client() as client:
        response = client.get("/dicom-web/studies", headers={"Authorization": "Basic YWxpY2U6eA=="})
    assert (response.status_code, response.headers["www-authenticate"]) == (401, 'Bearer realm="dicomweb"')


def test_bad_tokens_name_the_reason(harness: Harness) -> None:
    key = harness.authenticator.signing_key
    assert key is not None
    now = int(time.time())
    old = claims(iss=EMBEDDED_ISSUER, sub="alice", iat=now - 900, nbf=now - 900, exp=now - 600)
    expired = TestKey(key.private, key.kid, "RS256").sign(old)
    cases = {
        expired: "the token has expired",
        "not.a.token": "the token is malformed: its header is not base64url JSON",
        "abc": "the token is malformed: a signed JWT has three dot-separated parts",
    }
    with harness.client() as client:
        for token, reason in cases.items():
            response = client.get("/dicom-web/studies", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == (
                f'Bearer realm="dicomweb", error="invalid_token", error_description="{reason}"')
            assert response.json()["detail"] == reason
    assert [a["detail"] for a in harness.audit] == list(cases.values())


def test_good_token_sets_the_principal(harness: Harness) -> None:
    token = mint_token(harness.settings, harness.engine, "alice")
    with harness.client() as client:
        response = client.get("/dicom-web/studies", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == {"subject": "alice", "roles": ["doctor"], "client_ip": "127.0.0.1"}
    assert harness.audit == [{}]


def test_public_paths_and_options_need_no_token(harness: Harness) -> None:
    with harness.client() as client:
        for path in ("/health", "/openapi.json", "/auth/jwks.json", "/.well-known/openid-configuration"):
            assert client.get(path).status_code == 200, path
        assert client.options("/dicom-web/studies").status_code == 405  # reached the router, not refused
        assert client.get("/health/").status_code == 401  # only the exact public paths


def test_removed_user_is_refused_after_the_cache(harness: Harness) -> None:
    token = mint_token(harness.settings, harness.engine, "alice")
    other = mint_token(harness.settings, harness.engine, "alice")
    with harness.client() as client:
        assert client.get("/dicom-web/studies", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        remove_user(harness.engine, "alice")
        # A token validated within the last minute stays good until the cache lets it go...
        assert client.get("/dicom-web/studies", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        # ... a token not seen yet is checked against the user table at once.
        response = client.get("/dicom-web/studies", headers={"Authorization": f"Bearer {other}"})
    assert response.status_code == 401
    assert response.json()["detail"] == "user 'alice' no longer exists"


def test_cache_verifies_each_token_once(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    validate = harness.authenticator.validator.claims
    monkeypatch.setattr(harness.authenticator.validator, "claims", lambda t: calls.append(t) or validate(t))
    token = mint_token(harness.settings, harness.engine, "alice")
    with harness.client() as client:
        for _ in range(5):
            assert client.get("/dicom-web/studies", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert calls == [token]


def test_cache_is_bounded(harness: Harness) -> None:
    harness.authenticator.cache_entries = 2
    tokens = [mint_token(harness.settings, harness.engine, "alice") for _ in range(3)]
    for token in tokens:
        harness.authenticator.authenticate_sync(token)
    assert [harness.authenticator.cached(t) is not None for t in tokens] == [False, True, True]


def test_auth_off_acts_as_system(tmp_path: Path) -> None:
    for harness in harness_for(tmp_path, auth="off"):
        with harness.client("192.0.2.9") as client:
            response = client.get("/dicom-web/studies")
        assert response.json() == {"subject": "system", "roles": ["admin"], "client_ip": "192.0.2.9"}


@pytest.mark.parametrize(("peer", "forwarded", "expected"), [
    ("10.0.0.5", ["203.0.113.7"], "203.0.113.7"),
    ("10.0.0.5", ["198.51.100.1, 10.0.0.9"], "198.51.100.1"),
    ("10.0.0.5", ["198.51.100.1", "10.0.0.9"], "198.51.100.1"),  # two headers read as one list
    ("10.0.0.5", ["1.1.1.1, 203.0.113.7"], "203.0.113.7"),  # a client's own (spoofed) entry is not believed
    ("192.0.2.1", ["203.0.113.7"], "192.0.2.1"),  # not from a trusted proxy: the header is ignored
    ("10.0.0.5", ["garbage"], "10.0.0.5"),
    ("10.0.0.5", ["10.1.1.1"], "10.1.1.1"),
    ("10.0.0.5", ["203.0.113.7:5123"], "203.0.113.7"),
    ("2001:db8::1", ["[2001:db9::7]:443"], "2001:db9::7"),
    ("::ffff:10.0.0.5", ["203.0.113.7"], "203.0.113.7"),
    ("10.0.0.5", [], "10.0.0.5"),
])
def test_client_address(peer: str, forwarded: list[str], expected: str) -> None:
    assert client_address(peer, forwarded, proxy_networks(["10.0.0.0/8", "2001:db8::/32"])) == expected


def test_client_ip_through_the_middleware(harness: Harness) -> None:
    token = mint_token(harness.settings, harness.engine, "alice")
    headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": "6.6.6.6, 203.0.113.7"}
    with harness.client("10.0.0.5") as client:
        assert client.get("/dicom-web/studies", headers=headers).json()["client_ip"] == "203.0.113.7"
    with harness.client("192.0.2.1") as client:
        assert client.get("/dicom-web/studies", headers=headers).json()["client_ip"] == "192.0.2.1"
