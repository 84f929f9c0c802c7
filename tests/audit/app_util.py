"""A minimal starlette app behind AuditMiddleware and a fake authentication middleware, for the audit tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from dicomweb.audit.log import AuditLog
from dicomweb.audit.middleware import AuditMiddleware
from dicomweb.audit.routes import audit_routes
from dicomweb.http.problems import HTTPProblem, from_exception, problem_response
from dicomweb.policies.principal import Principal
from dicomweb.settings import load_settings

PEOPLE = {
    "auditor": Principal("auditor", frozenset({"auditor"}), institution="North"),
    "north-admin": Principal("north-admin", frozenset({"institution_admin"}), institution="North"),
    "doctor": Principal("doctor", frozenset({"doctor", "chief"}), institution="North"),
}


class FakeAuth:
    """Stands in for the identity middleware: the principal from ``x-user``, the address from ``x-ip``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            if "x-ip" in headers:
                scope["client_ip"] = headers["x-ip"]
            user = headers.get("x-user")
            if user == "bad-token":
                scope.setdefault("dicomweb.audit", {}).update(action="login", detail="token expired")
                await problem_response(401, "token expired", headers={"WWW-Authenticate": "Bearer"})(
                    scope, receive, send)
                return
            if user:
                scope["principal"] = PEOPLE[user]
        await self.app(scope, receive, send)


class FakePolicy:
    def audit_scope(self, principal: Principal) -> str | None:
        if "auditor" in principal.roles:
            return "*"
        if "institution_admin" in principal.roles:
            return principal.institution
        return None


async def _studies(request: Request) -> Response:
    request.scope.setdefault("dicomweb.audit", {})["count"] = 2
    return JSONResponse([{}, {}])


async def _metadata(request: Request) -> Response:
    request.scope.setdefault("dicomweb.audit", {}).update(patient="P1", institution="North")
    return Response(b"x" * 1234, media_type="application/dicom+json")


async def _study(request: Request) -> Response:
    request.scope.setdefault("dicomweb.audit", {})["outcome"] = "denied"  # the policy hid it; the answer stays 404
    return problem_response(404, "no such study")


async def _store(request: Request) -> Response:
    await request.body()
    request.scope.setdefault("dicomweb.audit", {}).update(study="1.2.3", institution="North")
    return Response(status_code=200)


async def _forbidden(request: Request) -> Response:
    return problem_response(403, "no")


async def _stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"y" * 100
            await asyncio.sleep(0.02)

    return StreamingResponse(chunks(), media_type="application/octet-stream")


async def _boom(request: Request) -> Response:
    raise RuntimeError("boom")


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPProblem)
    return from_exception(exc)


def make_app(engine: Engine, data_dir: Path, audit: bool = True) -> tuple[Starlette, AuditLog | None]:
    settings = load_settings(None, data_dir=data_dir, auth="on")
    app = Starlette(
        routes=[
            Route("/health", _health),
            Route("/dicom-web/studies", _studies, methods=["GET"]),
            Route("/dicom-web/studies", _store, methods=["POST"]),
            Route("/dicom-web/studies/{study}", _study, methods=["GET"]),
            Route("/dicom-web/studies/{study}/metadata", _metadata, methods=["GET"]),
            Route("/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{frames}", _forbidden),
            Route("/wado", _metadata),
            Route("/stream", _stream),
            Route("/boom", _boom),
            *audit_routes(),
        ],
        middleware=[Middleware(AuditMiddleware), Middleware(FakeAuth)],
        exception_handlers={HTTPProblem: _problem},
    )
    log = AuditLog.open(engine, settings) if audit else None
    app.state.audit = log
    app.state.policy = FakePolicy()
    app.state.archive = SimpleNamespace(engine=engine, settings=settings)
    return app, log


def records(engine: Engine, **where: Any) -> list[dict[str, Any]]:
    from dicomweb.audit.query import AuditFilter, search

    return search(engine, AuditFilter(**where), limit=1000)
