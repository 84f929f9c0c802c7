"""The embedded issuer's endpoints: the password grant (RFC 6749 4.3), its JWKS, and OpenID discovery."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ...http.problems import problem_response
from .authenticator import Authenticator
from .issuer import issue_token
from .keys import ALGORITHM
from .users import verify_password

MAX_FORM_BYTES = 16 * 1024
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _oauth_error(error: str, description: str, status: int = 400) -> Response:
    return JSONResponse({"error": error, "error_description": description}, status_code=status, headers=_NO_STORE)


def _embedded(request: Request) -> Authenticator | Response:
    authenticator: Authenticator = request.app.state.authenticator
    if not authenticator.embedded:
        return problem_response(404, f"this archive trusts tokens of {authenticator.issuer}; "
                                     "log in at that identity provider")
    return authenticator


def _audit(request: Request, detail: str) -> None:
    audit = request.scope.setdefault("dicomweb.audit", {})
    audit["action"] = "login"
    audit["detail"] = detail


async def _form(request: Request) -> dict[str, str] | Response:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return _oauth_error("invalid_request", "send the token request as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return _oauth_error("invalid_request", f"the token request is larger than {MAX_FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        return _oauth_error("invalid_request", "the token request is not a valid URL-encoded form")
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:  # RFC 6749 3.2: parameters must not be repeated
            return _oauth_error("invalid_request", f"the parameter {key} is given more than once")
        form[key] = value
    return form


async def token(request: Request) -> Response:
    """``POST /auth/token``: grant_type=password, username, password -> a bearer token."""
    found = _embedded(request)
    if isinstance(found, Response):
        return found
    form = await _form(request)
    if isinstance(form, Response):
        return form
    grant = form.get("grant_type", "")
    if grant != "password":
        return _oauth_error("unsupported_grant_type" if grant else "invalid_request",
                            "only grant_type=password is supported" if grant else "grant_type is missing")
    username, password = form.get("username", ""), form.get("password", "")
    if not username or not password:
        return _oauth_error("invalid_request", "username and password are required")
    archive = request.app.state.archive
    key = found.signing_key
    assert key is not None

    def login() -> tuple[str, int] | None:  # scrypt and the RSA signature are CPU work: off the loop
        user = verify_password(archive.engine, username, password)
        return issue_token(archive.settings, key, user) if user is not None else None

    issued = await anyio.to_thread.run_sync(login)
    if issued is None:
        _audit(request, f"password login refused for {username!r}")
        return _oauth_error("invalid_grant", "the user name or password is wrong, or the user is disabled")
    _audit(request, f"token issued to {username!r}")
    return JSONResponse({"access_token": issued[0], "token_type": "Bearer", "expires_in": issued[1]},
                        headers=_NO_STORE)


async def jwks(request: Request) -> Response:
    """``GET /auth/jwks.json``: the embedded issuer's public keys."""
    found = _embedded(request)
    if isinstance(found, Response):
        return found
    assert found.signing_key is not None
    return JSONResponse(found.signing_key.jwks, headers={"Cache-Control": "public, max-age=300"})


async def discovery(request: Request) -> Response:
    """``GET /.well-known/openid-configuration``: where the keys and the token endpoint are."""
    found = _embedded(request)
    if isinstance(found, Response):
        return found
    base = str(request.base_url).rstrip("/")
    document: dict[str, Any] = {
        "issuer": found.issuer,
        "jwks_uri": f"{base}/auth/jwks.json",
        "token_endpoint": f"{base}/auth/token",
        "grant_types_supported": ["password"],
        "token_endpoint_auth_methods_supported": ["none"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ALGORITHM],
        "claims_supported": sorted({"sub", "iss", "aud", "exp", "nbf", "iat", "jti",
                                    *(path.split(".")[0] for path in found.settings.auth_claims.values())}),
    }
    return JSONResponse(document)


def auth_routes() -> list[Route]:
    return [
        Route("/auth/token", token, methods=["POST"]),
        Route("/auth/jwks.json", jwks, methods=["GET"]),
        Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
    ]
