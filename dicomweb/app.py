"""The web application: DICOMweb under ``settings.base_path``, the OpenAPI contract, a health check."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import yaml
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from .archive import Archive
from .audit import AuditLog, AuditMiddleware, audit_routes
from .backends.tiers import StorageUnavailable
from .http.problems import HTTPProblem, from_exception, problem_response
from .jobs.admin import admin_routes
from .jobs.background import Background
from .plugins.dimse.routes import worklist_routes
from .policies.deid import Deidentifier
from .policies.engine import PolicyEngine
from .policies.guard import guarded
from .policies.http import operators_only
from .policies.identity import AuthMiddleware, auth_routes, build_authenticator, list_users
from .policies.records.routes import policy_routes
from .qido.routes import (
    search_instances,
    search_series,
    search_series_instances,
    search_studies,
    search_study_instances,
    search_study_series,
)
from .rendered.routes import rendered, thumbnail
from .services.containers import InstanceIntegrityError
from .settings import Settings, load_settings
from .stow.routes import store_instances
from .wado.bulkdata import retrieve_bulkdata
from .wado.frames import retrieve_frames
from .wado.routes import delete_resource, retrieve_instances, retrieve_metadata
from .wado.uri import wado_uri

log = logging.getLogger(__name__)

STUDY = "/studies/{study}"
SERIES = STUDY + "/series/{series}"
INSTANCE = SERIES + "/instances/{instance}"


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    """The contract: from the repository checkout, else the copy packaged into the wheel."""
    checkout = Path(__file__).resolve().parent.parent / "openapi" / "openapi.yaml"
    text = (
        checkout.read_text(encoding="utf-8")
        if checkout.exists()
        else resources.files("dicomweb").joinpath("openapi.yaml").read_text(encoding="utf-8")
    )
    document: dict[str, Any] = yaml.safe_load(text)
    return document


async def openapi_json(request: Request) -> Response:
    return Response(json.dumps(openapi_document()), media_type="application/json")


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def dicomweb_routes() -> list[Route]:
    """Every DICOMweb resource; study-scoped ones pass the policy guard first (searches carry the policy's
    predicate in their query, stores the institutions the caller may write)."""
    instances, metadata = guarded(retrieve_instances, "instances"), guarded(retrieve_metadata, "metadata")
    delete = guarded(delete_resource, "delete")
    rendered_image, thumbnail_image = guarded(rendered, "rendered"), guarded(thumbnail, "thumbnail")
    return [
        # First: a viewer scrolling a stack asks for frames more than for anything else (no other route
        # matches a frames path, so the order changes nothing but the number of patterns tried).
        Route(INSTANCE + "/frames/{frames}", guarded(retrieve_frames, "frames"), methods=["GET"]),
        Route("/studies", search_studies, methods=["GET"]),
        Route("/series", search_series, methods=["GET"]),
        Route("/instances", search_instances, methods=["GET"]),
        Route(STUDY + "/series", search_study_series, methods=["GET"]),
        Route(STUDY + "/instances", search_study_instances, methods=["GET"]),
        Route(SERIES + "/instances", search_series_instances, methods=["GET"]),
        Route("/studies", store_instances, methods=["POST"]),
        Route(STUDY, instances, methods=["GET"]),
        Route(STUDY, store_instances, methods=["POST"]),
        Route(STUDY, delete, methods=["DELETE"]),
        Route(STUDY + "/metadata", metadata, methods=["GET"]),
        Route(SERIES, instances, methods=["GET"]),
        Route(SERIES, delete, methods=["DELETE"]),
        Route(SERIES + "/metadata", metadata, methods=["GET"]),
        Route(INSTANCE, instances, methods=["GET"]),
        Route(INSTANCE, delete, methods=["DELETE"]),
        Route(INSTANCE + "/metadata", metadata, methods=["GET"]),
        Route(STUDY + "/rendered", rendered_image, methods=["GET"]),
        Route(SERIES + "/rendered", rendered_image, methods=["GET"]),
        Route(INSTANCE + "/rendered", rendered_image, methods=["GET"]),
        Route(INSTANCE + "/frames/{frames}/rendered", rendered_image, methods=["GET"]),
        Route(STUDY + "/thumbnail", thumbnail_image, methods=["GET"]),
        Route(SERIES + "/thumbnail", thumbnail_image, methods=["GET"]),
        Route(INSTANCE + "/thumbnail", thumbnail_image, methods=["GET"]),
        Route(INSTANCE + "/frames/{frames}/thumbnail", thumbnail_image, methods=["GET"]),
        Route(INSTANCE + "/bulkdata/{path:path}", guarded(retrieve_bulkdata, "bulkdata"), methods=["GET"]),
        Route("/wado", guarded(wado_uri, "wado-uri"), methods=["GET"]),
    ]


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPProblem)
    return from_exception(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = {404: f"no resource at {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
    message = detail.get(exc.status_code, str(exc.detail))
    return problem_response(exc.status_code, message, headers=dict(exc.headers or {}))


async def _storage_unavailable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StorageUnavailable)
    log.warning("storage unavailable on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(503, f"a storage tier is not answering; try again later ({exc})",
                            headers={"Retry-After": str(exc.retry_after)})


async def _integrity(request: Request, exc: Exception) -> Response:
    # A packed instance whose stored bytes fail their checksums: a server-side fault, named (issue 8).
    assert isinstance(exc, InstanceIntegrityError)
    log.error("integrity check failed on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(503, str(exc), sop_instance_uid=exc.sop_instance_uid)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem_response(500, "the server failed on this request; the error is in the server log")


def create_app(settings: Settings, archive: Archive | None = None) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        opened = archive if archive is not None else await anyio.to_thread.run_sync(Archive.open, settings)
        await anyio.to_thread.run_sync(opened.warm_up)
        if archive is None:  # an archive given to create_app has its parts attached there already
            await anyio.to_thread.run_sync(_attach_policy, app, opened, settings)
            await anyio.to_thread.run_sync(_hint_first_user, opened, settings)
        app.state.archive = opened
        background = Background(opened)
        await anyio.to_thread.run_sync(background.start)
        app.state.background = background
        try:
            yield
        finally:
            if app.state.audit is not None:
                await anyio.to_thread.run_sync(app.state.audit.close)
            await anyio.to_thread.run_sync(background.close)
            if archive is None:
                opened.close()

    middleware = []
    if settings.cors_origins:  # outermost: a preflight needs no token
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "HEAD", "POST", "DELETE", "OPTIONS"],
                allow_headers=["*"],
                expose_headers=["Content-Location", "Content-Length", "ETag", "Last-Modified", "Warning",
                                "Content-Range", "Accept-Ranges", "Content-Encoding"],
            )
        )
    # Audit outside authentication, so refused logins are recorded too; both read the app's state.
    middleware += [Middleware(AuditMiddleware), Middleware(AuthMiddleware)]
    app = Starlette(
        routes=_with_dicomweb_first(settings.base_path, [
            Route("/openapi.json", openapi_json, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/wado", guarded(wado_uri, "wado-uri"), methods=["GET"]),
            *auth_routes(),  # the embedded issuer: token endpoint, JWKS, discovery
            *policy_routes(),  # grants, care relationships, research shares
            *audit_routes(),
            *operators_only(admin_routes()),
            *operators_only(worklist_routes()),  # DIMSE gateway's worklist (issue 7)
        ]),
        middleware=middleware,
        exception_handlers={HTTPProblem: _problem, HTTPException: _http_error,
                            StorageUnavailable: _storage_unavailable, InstanceIntegrityError: _integrity,
                            Exception: _unexpected},
        lifespan=lifespan,
    )
    app.state.audit = None
    if archive is not None:
        _attach_policy(app, archive, settings)
        app.state.archive = archive
    return app


WORKER_LOG_LEVEL = "DICOMWEB_WORKER_LOG_LEVEL"


def app_from_environment() -> Starlette:
    """The app of one of ``dicomweb serve --workers N``'s processes, from the settings its parent put in the
    environment (``cli.worker_environment``)."""
    level = os.environ.get(WORKER_LOG_LEVEL, "info").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")
    return create_app(load_settings())


def _with_dicomweb_first(base_path: str, others: list[Route]) -> list[Route | Mount]:
    """DICOMweb ahead of the other routes: the router tries routes in order, one regex each, and nearly every
    request is a DICOMweb one. Behind them only if ``base_path`` is a prefix of one of theirs, which must win."""
    mount = Mount(base_path, routes=dicomweb_routes())
    if any(route.path == base_path or route.path.startswith(base_path + "/") for route in others):
        return [*others, mount]
    return [mount, *others]


def _hint_first_user(archive: Archive, settings: Settings) -> None:
    """A new install answers 401 to everything until someone has a token: say how to get one."""
    if settings.auth == "on" and not settings.auth_issuer and not list_users(archive.engine):
        log.warning("authorization is on and there are no users yet: `dicomweb users add NAME --role admin "
                    "--data %s`, then `dicomweb token NAME --data %s` for a bearer token", settings.data_dir,
                    settings.data_dir)


def _attach_policy(app: Starlette, archive: Archive, settings: Settings) -> None:
    """The authorization parts over an opened archive: identities, decisions, de-identification, audit."""
    app.state.authenticator = build_authenticator(settings, archive.engine)
    app.state.policy = PolicyEngine.open(archive.engine, settings.policy_file)
    app.state.deid = Deidentifier.open(settings, archive.engine)
    app.state.audit = AuditLog.open(archive.engine, settings) if settings.audit_enabled else None
