"""Where the validator finds a token's key: the embedded issuer's own key set, or an external JWKS URL.

An external JWKS is fetched with httpx (with a timeout) and cached; a token naming a key the cache lacks
makes one refetch (key rotation), at most once a minute, so unknown ``kid`` values cannot hammer the
identity provider. Fetches block: callers run them off the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

import httpx

from .jose import JoseError, JsonWebKey

log = logging.getLogger(__name__)

REFETCH_INTERVAL = 60.0  # seconds between fetches caused by an unknown kid
MAX_AGE = 3600.0  # a cached key set is refreshed on the first use after this many seconds
TIMEOUT = 5.0


class KeysUnavailable(Exception):
    """The identity provider's keys could not be fetched (a server-side condition, not the token's fault)."""


class KeySource(Protocol):
    def find(self, kid: str) -> Any | None:
        """The key (an authlib JWK) with this id, or None."""


def _parse(document: Any) -> dict[str, Any]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JSON Web Key Set (no 'keys' list)")
    keys: dict[str, Any] = {}
    for raw in document["keys"]:
        if not isinstance(raw, dict) or not raw.get("kid") or raw.get("use", "sig") != "sig":
            continue  # keys without an id cannot be chosen; encryption keys do not sign
        try:
            keys[str(raw["kid"])] = JsonWebKey.import_key(raw)
        except (JoseError, ValueError, TypeError) as exc:
            log.warning("ignoring a JWKS key %s that cannot be read: %s", raw.get("kid"), exc)
    return keys


class StaticKeys:
    """A fixed key set (the embedded issuer's public keys)."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self._keys = _parse(jwks)

    def find(self, kid: str) -> Any | None:
        return self._keys.get(kid)


def discover_jwks_url(issuer: str, client: httpx.Client) -> str:
    """The ``jwks_uri`` of an OpenID provider, from its discovery document."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = client.get(url)
        response.raise_for_status()
        jwks_uri = response.json().get("jwks_uri")
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        raise KeysUnavailable(f"the identity provider's discovery document at {url} cannot be read: {exc}") from exc
    if not isinstance(jwks_uri, str) or not jwks_uri:
        raise KeysUnavailable(f"the discovery document at {url} names no jwks_uri")
    return jwks_uri


class RemoteJwks:
    """An external JWKS URL (or one found through the issuer's discovery document), cached."""

    def __init__(self, url: str, *, issuer: str = "", timeout: float = TIMEOUT,
                 refetch_interval: float = REFETCH_INTERVAL, max_age: float = MAX_AGE) -> None:
        self.url = url
        self.issuer = issuer
        self.timeout = timeout
        self.refetch_interval = refetch_interval
        self.max_age = max_age
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None  # monotonic time of the last attempt
        self._error = ""  # why the last attempt failed
        self._lock = threading.Lock()

    def find(self, kid: str) -> Any | None:
        with self._lock:
            since = time.monotonic() - self._fetched_at if self._fetched_at is not None else None
            if since is None or since >= self.max_age:
                self._fetch()
            elif kid not in self._keys and since >= self.refetch_interval:
                self._fetch()  # perhaps the provider rotated its keys
            elif self._error and not self._keys:
                raise KeysUnavailable(self._error)  # the last attempt failed; the next waits a minute
            return self._keys.get(kid)

    def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            with httpx.Client(timeout=self.timeout, follow_redirects=True) as client:
                if not self.url:
                    self.url = discover_jwks_url(self.issuer, client)
                response = client.get(self.url)
                response.raise_for_status()
                self._keys = _parse(response.json())
                self._error = ""
        except (KeysUnavailable, httpx.HTTPError, ValueError) as exc:
            self._error = (str(exc) if isinstance(exc, KeysUnavailable)
                           else f"the identity provider's keys at {self.url} cannot be fetched: {exc}")
            if not self._keys:
                raise KeysUnavailable(self._error) from exc
            log.warning("keeping the cached JWKS: %s", self._error)
