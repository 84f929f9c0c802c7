"""``AuthMiddleware``: who is asking (a bearer token's principal) and from where (the client address).

Pure ASGI, so streamed answers pass untouched. It answers 401 itself, inside the audit middleware, which
then records the failed login with the reason this middleware leaves in ``scope["dicomweb.audit"]``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from ...http.problems import problem_response
from ..principal import SYSTEM
from .authenticator import Authenticator
from .jwks import KeysUnavailable
from .validator import TokenError

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/auth/token", "/auth/jwks.json",
                          "/.well-known/openid-configuration"})
REALM = 'Bearer realm="dicomweb"'

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def proxy_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip())


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[v6]:port"
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # "v4:port"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def client_address(peer: str, forwarded_for: list[str], trusted: tuple[Network, ...]) -> str:
    """The client's address: the peer, or - while the hop at hand is a trusted proxy - the X-Forwarded-For
    entry it names, read right to left (the rightmost entries are the ones our own proxies appended)."""
    hops = [h for header in forwarded_for for h in header.split(",") if h.strip()]
    current = peer
    while hops:
        address = _address(current)
        if address is None or not any(address in network for network in trusted):
            break
        following = hops.pop()
        if _address(following) is None:
            break  # a garbled entry: the last trusted hop is as far as the chain can be believed
        current = following.strip()
    address = _address(current)
    return str(address) if address is not None else current


def _header(scope: Scope, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope.get("headers", ()) if key.lower() == name]


def _challenge(reason: str | None) -> str:
    if reason is None:
        return REALM  # RFC 6750 3.1: no error code when the request carried no token at all
    description = reason.replace("\\", "/").replace('"', "'")
    return f'{REALM}, error="invalid_token", error_description="{description}"'


class AuthMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._trusted: tuple[tuple[str, ...], tuple[Network, ...]] = ((), ())

    def _networks(self, entries: tuple[str, ...]) -> tuple[Network, ...]:
        if self._trusted[0] != entries:
            self._trusted = (entries, proxy_networks(entries))
        return self._trusted[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        peer = scope["client"][0] if scope.get("client") else ""
        scope["client_ip"] = peer
        authenticator: Authenticator | None = getattr(scope["app"].state, "authenticator", None)
        if authenticator is None:
            response = problem_response(503, "the server is starting; authentication is not ready yet")
            await response(scope, receive, send)
            return
        settings = authenticator.settings
        scope["client_ip"] = client_address(peer, _header(scope, b"x-forwarded-for"),
                                            self._networks(settings.trusted_proxies))
        if settings.auth == "off":
            scope["principal"] = SYSTEM
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        if scope["method"] == "OPTIONS" or path in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        refusal = await self._authenticate(scope, authenticator)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        audit = scope.setdefault("dicomweb.audit", {})
        audit["action"] = "login"
        audit["detail"] = refusal.detail
        await refusal(scope, receive, send)

    async def _authenticate(self, scope: Scope, authenticator: Authenticator) -> _Refusal | None:
        """None when ``scope["principal"]`` is set; else the answer that refuses the request."""
        values = _header(scope, b"authorization")
        scheme, _, token = (values[0] if values else "").strip().partition(" ")
        if not values or scheme.lower() != "bearer":
            return _Refusal(401, "this request needs a bearer token (Authorization: Bearer ...)", challenge=None)
        token = token.strip()
        if not token or len(values) > 1:
            reason = "the token is malformed: send one Authorization header with one token"
            return _Refusal(401, reason, challenge=reason)
        try:
            scope["principal"] = await authenticator.authenticate(token)
        except TokenError as exc:
            return _Refusal(401, exc.reason, challenge=exc.reason)
        except KeysUnavailable as exc:
            log.warning("cannot validate a token: %s", exc)
            return _Refusal(503, f"tokens cannot be checked now: {exc}", challenge=None, retry=True)
        return None


class _Refusal:
    """A 401 (with its RFC 6750 challenge) or a 503 when the identity provider's keys are out of reach."""

    def __init__(self, status: int, detail: str, *, challenge: str | None, retry: bool = False) -> None:
        self.status = status
        self.detail = detail
        headers = {"Retry-After": "30"} if retry else {"WWW-Authenticate": _challenge(challenge)}
        self.response = problem_response(status, detail, headers=headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.response(scope, receive, send)
