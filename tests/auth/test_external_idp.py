"""An external identity provider: its JWKS (and discovery document) served by a tiny HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dicomweb.policies.identity import build_authenticator
from dicomweb.policies.identity.jwks import KeysUnavailable, RemoteJwks
from dicomweb.policies.identity.validator import TokenError
from dicomweb.settings import load_settings

from .conftest import TestKey, claims, rsa_key


@dataclass
class Provider:
    url: str
    keys: list[dict[str, Any]] = field(default_factory=list)
    hits: list[str] = field(default_factory=list)
    failing: bool = False


@pytest.fixture
def provider() -> Iterator[Provider]:
    state = Provider(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits.append(self.path)
            if state.failing:
                self.send_error(500)
                return
            if self.path == "/jwks":
                body = json.dumps({"keys": state.keys}).encode()
            elif self.path == "/.well-known/openid-configuration":
                body = json.dumps({"issuer": state.url, "jwks_uri": f"{state.url}/jwks"}).encode()
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def token(key: TestKey, issuer: str, jti: str) -> str:
    return key.sign(claims(iss=issuer, jti=jti))


def test_rotation_picks_up_a_new_kid_once_a_minute(provider: Provider, tmp_path: Path) -> None:
    old, new = rsa_key("old"), rsa_key("new")
    provider.keys = [old.public_jwk]
    settings = load_settings(None, data_dir=tmp_path, auth="on", auth_issuer=provider.url,
                             auth_jwks_url=f"{provider.url}/jwks")
    authenticator = build_authenticator(settings)
    assert not authenticator.embedded
    assert authenticator.authenticate_sync(token(old, provider.url, "1")).subject == "u-42"
    assert authenticator.authenticate_sync(token(old, provider.url, "2")).issuer == provider.url
    assert provider.hits == ["/jwks"]  # cached

    provider.keys = [new.public_jwk]  # the provider rotates
    with pytest.raises(TokenError) as caught:
        authenticator.authenticate_sync(token(new, provider.url, "3"))
    assert caught.value.code == "unknown_key"
    assert provider.hits == ["/jwks"]  # the first fetch was less than a minute ago: no refetch yet

    remote = authenticator.validator.keys
    assert isinstance(remote, RemoteJwks)
    remote.refetch_interval = 0.2
    time.sleep(0.25)
    assert authenticator.authenticate_sync(token(new, provider.url, "4")).subject == "u-42"
    assert provider.hits == ["/jwks", "/jwks"]
    with pytest.raises(TokenError) as caught:  # the old key is gone; a refetch right away is not allowed
        authenticator.authenticate_sync(token(old, provider.url, "5"))
    assert caught.value.reason == "the token is signed with an unknown key (kid 'old')"
    assert provider.hits == ["/jwks", "/jwks"]


def test_jwks_url_from_discovery(provider: Provider, tmp_path: Path) -> None:
    key = rsa_key("k1")
    provider.keys = [key.public_jwk]
    settings = load_settings(None, data_dir=tmp_path, auth="on", auth_issuer=provider.url)
    authenticator = build_authenticator(settings)
    assert authenticator.authenticate_sync(token(key, provider.url, "1")).subject == "u-42"
    assert provider.hits == ["/.well-known/openid-configuration", "/jwks"]


def test_provider_down(provider: Provider, tmp_path: Path) -> None:
    key = rsa_key("k1")
    provider.failing = True
    settings = load_settings(None, data_dir=tmp_path, auth="on", auth_issuer=provider.url,
                             auth_jwks_url=f"{provider.url}/jwks")
    authenticator = build_authenticator(settings)
    with pytest.raises(KeysUnavailable, match="cannot be fetched"):
        authenticator.authenticate_sync(token(key, provider.url, "1"))
    with pytest.raises(KeysUnavailable):  # no hammering: the next attempt waits for the refetch interval
        authenticator.authenticate_sync(token(key, provider.url, "2"))
    assert provider.hits == ["/jwks"]


def test_cached_keys_survive_an_outage(provider: Provider) -> None:
    key = rsa_key("k1")
    provider.keys = [key.public_jwk]
    remote = RemoteJwks(f"{provider.url}/jwks", max_age=0.1)
    assert remote.find("k1") is not None
    provider.failing = True
    time.sleep(0.15)
    assert remote.find("k1") is not None  # the refresh failed; the cached key set stays
    assert provider.hits == ["/jwks", "/jwks"]
