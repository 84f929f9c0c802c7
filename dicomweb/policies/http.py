"""What route handlers ask of the policy layer: who is calling, and what the audit record should name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import Route

from ..http.problems import HTTPProblem
from .engine import PolicyEngine
from .principal import SYSTEM, Principal

AUDIT_KEY = "dicomweb.audit"


def principal_of(request: HTTPConnection) -> Principal:
    """The caller; the authentication middleware put it in the scope (the system when auth is off)."""
    principal = request.scope.get("principal")
    if isinstance(principal, Principal):
        return principal
    if request.app.state.archive.settings.auth == "off":
        return SYSTEM
    raise HTTPProblem(401, "this request carries no valid bearer token", headers={"WWW-Authenticate": "Bearer"})


def policy_of(request: HTTPConnection) -> PolicyEngine:
    policy: PolicyEngine = request.app.state.policy
    return policy


def audit_note(request: HTTPConnection, **fields: Any) -> None:
    """Add what this request touched to its audit record (the audit middleware writes it at the end)."""
    request.scope.setdefault(AUDIT_KEY, {}).update({k: v for k, v in fields.items() if v not in (None, "")})


def set_query(request: Request, items: list[tuple[str, str]]) -> None:
    """Replace the request's query string (the handler it is passed on to reads the new one)."""
    request.scope["query_string"] = urlencode(items).encode()
    if hasattr(request, "_query_params"):
        del request._query_params  # Starlette parses the query string once and keeps it


def operators_only(routes: list[Route]) -> list[Route]:
    """The operations routes (jobs, tiers, worklist entries): for roles with the "operate" right only."""

    def guarded(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def check(request: Request) -> Response:
            if not policy_of(request).may_manage(principal_of(request), "operate", ""):
                raise HTTPProblem(403, "this identity may not operate the archive")
            return await endpoint(request)

        return check

    return [Route(r.path, guarded(r.endpoint), methods=sorted(r.methods or ()), name=r.name) for r in routes]


def store_institutions(request: HTTPConnection) -> frozenset[str] | None:
    """The institutions the caller may store into (None: any); 403 when it may store nothing at all."""
    principal = principal_of(request)
    allowed = policy_of(request).store_institutions(principal)
    if allowed is not None and not allowed:
        raise HTTPProblem(403, "this identity may not store instances")
    return allowed
