"""Local users: the table on SQLite and PostgreSQL, the CLI, the token endpoint, the signing key."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.testclient import TestClient
from typer.testing import CliRunner

from dicomweb.cli import app as cli
from dicomweb.index import db
from dicomweb.policies.identity import (
    EMBEDDED_ISSUER,
    AuthMiddleware,
    UserError,
    add_user,
    auth_routes,
    build_authenticator,
    get_user,
    list_users,
    mint_token,
    principal_for_user,
    remove_user,
    verify_password,
)
from dicomweb.policies.identity.keys import KEY_FILE, load_signing_key
from dicomweb.policies.identity.passwords import check_password, hash_password
from dicomweb.policies.principal import NationalId, Principal
from dicomweb.settings import load_settings


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    yield engine
    engine.dispose()


def payload(token: str) -> dict[str, object]:
    part = token.split(".")[1]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def test_password_hash_format() -> None:
    encoded = hash_password("s3cret")
    scheme, n, r, p, salt, key = encoded.split("$")
    assert (scheme, n, r, p, len(base64.b64decode(salt)), len(base64.b64decode(key))) == (
        "scrypt", "16384", "8", "1", 16, 32)
    assert hash_password("s3cret") != encoded  # a fresh salt each time
    assert check_password("s3cret", encoded)
    assert not check_password("s3cret ", encoded)
    assert not check_password("s3cret", "")
    assert not check_password("s3cret", "md5$abc")


def test_user_table(engine: Engine) -> None:
    add_user(engine, "alice", roles=["doctor", "chief", "doctor"], password="pw-alice", name="Smith^Alice",
             institution="General Hospital", department="Cardiology", national_id="12345678",
             national_id_issuer="NATIONAL")
    add_user(engine, "modality1", roles=["modality"], password=None, institution="General Hospital")
    with pytest.raises(UserError, match="exists already"):
        add_user(engine, "alice", roles=["doctor"], password="x")
    with pytest.raises(UserError, match="at least one role"):
        add_user(engine, "bob", roles=[], password="x")
    with pytest.raises(UserError, match="user name"):
        add_user(engine, "bad name", roles=["doctor"], password="x")
    with pytest.raises(UserError, match="role names"):
        add_user(engine, "bob", roles=["doc,tor"], password="x")

    alice = get_user(engine, "alice")
    assert alice is not None
    assert (alice.roles, alice.name, alice.institution, alice.department, alice.national_id,
            alice.national_id_issuer, alice.disabled, alice.has_password) == (
        ("chief", "doctor"), "Smith^Alice", "General Hospital", "Cardiology", "12345678", "NATIONAL", False, True)
    assert alice.created_at.tzinfo is not None or engine.dialect.name == "sqlite"
    assert [u.username for u in list_users(engine)] == ["alice", "modality1"]

    assert verify_password(engine, "alice", "pw-alice") == alice
    assert verify_password(engine, "alice", "wrong") is None
    assert verify_password(engine, "nobody", "pw-alice") is None
    assert verify_password(engine, "modality1", "") is None

    settings = load_settings(None, auth="on")
    assert principal_for_user(engine, settings, "modality1") == Principal(
        subject="modality1", roles=frozenset({"modality"}), institution="General Hospital",
        issuer=EMBEDDED_ISSUER, via="dimse")
    assert principal_for_user(engine, settings, "alice") == Principal(
        subject="alice", roles=frozenset({"doctor", "chief"}), name="Smith^Alice", institution="General Hospital",
        department="Cardiology", national_ids=(NationalId("12345678", "NATIONAL"),), issuer=EMBEDDED_ISSUER,
        via="dimse")
    assert principal_for_user(engine, settings, "nobody") is None

    assert remove_user(engine, "alice") is True
    assert remove_user(engine, "alice") is False
    assert get_user(engine, "alice") is None


def test_cli_users_and_token(database_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    data = ["--data", str(tmp_path / "data")]
    env = {"DICOMWEB_DATABASE_URL": database_url}

    def run(*args: str, input: str | None = None) -> tuple[int, str]:
        result = runner.invoke(cli, list(args), env=env, input=input)
        return result.exit_code, result.output

    assert run("users", "add", "alice", "--role", "doctor", "--role", "chief", "--institution", "General Hospital",
               "--department", "Cardiology", "--national-id", "12345678", "--national-id-issuer", "NATIONAL",
               "--name", "Smith^Alice", "--password", "pw-alice", *data) == (
        0, "added user alice (chief, doctor)\n")
    code, output = run("users", "add", "bob", "--role", "patient", *data, input="pw-bob\npw-bob\n")
    assert code == 0 and output.endswith("added user bob (patient)\n")
    assert run("users", "add", "pacs", "--role", "modality", "--no-password", *data)[0] == 0
    assert run("users", "add", "alice", "--role", "doctor", "--password", "x", *data) == (
        1, "error: user 'alice' exists already\n")
    assert run("users", "list", *data) == (0, (
        "username\troles\tname\tinstitution\tdepartment\tnational_id\tnational_id_issuer\tlogin\tstate\n"
        "alice\tchief,doctor\tSmith^Alice\tGeneral Hospital\tCardiology\t12345678\tNATIONAL\tpassword\tenabled\n"
        "bob\tpatient\t\t\t\t\t\tpassword\tenabled\n"
        "pacs\tmodality\t\t\t\t\t\ttoken-only\tenabled\n"))

    code, output = run("token", "alice", "--ttl", "120", *data)
    assert code == 0
    claims = payload(output.strip())
    assert claims["exp"] == claims["iat"] + 120  # type: ignore[operator]
    assert {k: v for k, v in claims.items() if k not in {"iat", "nbf", "exp", "jti"}} == {
        "iss": EMBEDDED_ISSUER, "sub": "alice", "aud": "dicomweb", "roles": ["chief", "doctor"],
        "name": "Smith^Alice", "institution": "General Hospital", "department": "Cardiology",
        "national_id": "12345678", "national_id_issuer": "NATIONAL"}
    settings = load_settings(None, data_dir=tmp_path / "data", database_url=database_url, auth="on")
    engine = db.make_engine(database_url)
    try:
        assert build_authenticator(settings, engine).authenticate_sync(output.strip()).roles == {"chief", "doctor"}
    finally:
        engine.dispose()

    assert run("token", "nobody", *data) == (1, "error: there is no user 'nobody'\n")
    assert run("users", "disable", "bob", *data) == (0, "disabled user bob\n")
    assert run("token", "bob", *data) == (1, "error: user 'bob' is disabled\n")
    assert run("users", "remove", "bob", *data) == (0, "removed user bob\n")
    assert run("users", "remove", "bob", *data) == (1, "error: there is no user 'bob'\n")


def test_token_claims_follow_custom_paths(tmp_path: Path) -> None:
    settings = load_settings(None, data_dir=tmp_path, auth="on",
                             auth_claims={"roles": "realm_access.roles", "national_id": "ids.national"})
    engine = db.make_engine(settings.resolved_database_url)
    db.upgrade(engine)
    try:
        add_user(engine, "carol", roles=["researcher"], password=None, national_id="555")
        token = mint_token(settings, engine, "carol")
        claims = payload(token)
        assert (claims["realm_access"], claims["ids"]) == ({"roles": ["researcher"]}, {"national": "555"})
        principal = build_authenticator(settings, engine).authenticate_sync(token)
        assert (principal.roles, principal.national_ids) == (frozenset({"researcher"}), (NationalId("555", ""),))
    finally:
        engine.dispose()


@pytest.fixture
def token_client(engine: Engine, tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    settings = load_settings(None, data_dir=tmp_path / "data", database_url=database_url, auth="on")
    add_user(engine, "alice", roles=["doctor"], password="pw-alice")
    app = Starlette(routes=auth_routes(), middleware=[Middleware(AuthMiddleware)])
    app.state.authenticator = build_authenticator(settings, engine)
    app.state.archive = SimpleNamespace(engine=engine, settings=settings)
    with TestClient(app) as client:
        yield client


def test_token_endpoint(token_client: TestClient) -> None:
    response = token_client.post("/auth/token", data={"grant_type": "password", "username": "alice",
                                                      "password": "pw-alice"})
    assert response.status_code == 200
    assert (response.headers["cache-control"], response.headers["pragma"]) == ("no-store", "no-cache")
    body = response.json()
    assert (set(body), body["token_type"], body["expires_in"]) == (
        {"access_token", "token_type", "expires_in"}, "Bearer", 3600)
    assert payload(body["access_token"])["sub"] == "alice"
    header = json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[0] + "=="))
    jwks = token_client.get("/auth/jwks.json").json()
    assert [k["kid"] for k in jwks["keys"]] == [header["kid"]]
    assert set(jwks["keys"][0]) == {"kty", "n", "e", "kid", "use", "alg"}  # public parts only

    discovery = token_client.get("/.well-known/openid-configuration").json()
    assert (discovery["issuer"], discovery["jwks_uri"], discovery["token_endpoint"],
            discovery["grant_types_supported"]) == (
        EMBEDDED_ISSUER, "http://testserver/auth/jwks.json", "http://testserver/auth/token", ["password"])


@pytest.mark.parametrize(("form", "error"), [
    ({"grant_type": "password", "username": "alice", "password": "wrong"}, "invalid_grant"),
    ({"grant_type": "password", "username": "nobody", "password": "pw-alice"}, "invalid_grant"),
    ({"grant_type": "password", "username": "alice"}, "invalid_request"),
    ({"username": "alice", "password": "pw-alice"}, "invalid_request"),
    ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
])
def test_token_endpoint_errors(token_client: TestClient, form: dict[str, str], error: str) -> None:
    response = token_client.post("/auth/token", data=form)
    assert (response.status_code, response.json()["error"]) == (400, error)


def test_token_endpoint_wants_a_form(token_client: TestClient) -> None:
    response = token_client.post("/auth/token", json={"grant_type": "password"})
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
    response = token_client.post("/auth/token", content=b"grant_type=password&grant_type=password",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.json() == {"error": "invalid_request",
                               "error_description": "the parameter grant_type is given more than once"}


def test_external_issuer_has_no_local_endpoints(tmp_path: Path) -> None:
    settings = load_settings(None, data_dir=tmp_path, auth="on", auth_issuer="https://idp.example.org",
                             auth_jwks_url="https://idp.example.org/jwks")
    app = Starlette(routes=auth_routes())
    app.state.authenticator = build_authenticator(settings)
    with TestClient(app) as client:
        response = client.get("/auth/jwks.json")
    assert response.status_code == 404
    assert response.json()["detail"] == ("this archive trusts tokens of https://idp.example.org; "
                                         "log in at that identity provider")
    assert not (tmp_path / "auth").exists()  # no local key is made for an external provider


def _load(data_dir: str, queue: multiprocessing.Queue[str]) -> None:
    queue.put(load_signing_key(Path(data_dir)).kid)


def test_signing_key_made_once_and_private(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[str] = context.Queue()
    workers = [context.Process(target=_load, args=(str(tmp_path), queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    kids = {queue.get(timeout=5) for _ in workers}
    assert kids == {load_signing_key(tmp_path).kid}
    assert stat.S_IMODE(os.stat(tmp_path / "auth" / KEY_FILE).st_mode) == 0o600
    assert os.listdir(tmp_path / "auth") == [KEY_FILE]  # no temporary files left behind
