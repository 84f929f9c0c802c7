"""The web application: DICOMweb under ``settings.base_path``, the OpenAPI contract, a health check."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from .archive import Archive
from .http.problems import HTTPProblem, from_exception, problem_response
from .qido.routes import search_studies
from .settings import Settings
from .stow.routes import store_instances
from .wado.routes import delete_resource, retrieve_instances, retrieve_metadata

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
    return [
        Route("/studies", search_studies, methods=["GET"]),
        Route("/studies", store_instances, methods=["POST"]),
        Route(STUDY, retrieve_instances, methods=["GET"]),
        Route(STUDY, store_instances, methods=["POST"]),
        Route(STUDY, delete_resource, methods=["DELETE"]),
        Route(STUDY + "/metadata", retrieve_metadata, methods=["GET"]),
        Route(SERIES, retrieve_instances, methods=["GET"]),
        Route(SERIES, delete_resource, methods=["DELETE"]),
        Route(SERIES + "/metadata", retrieve_metadata, methods=["GET"]),
        Route(INSTANCE, retrieve_instances, methods=["GET"]),
        Route(INSTANCE, delete_resource, methods=["DELETE"]),
        Route(INSTANCE + "/metadata", retrieve_metadata, methods=["GET"]),
    ]


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPProblem)
    return from_exception(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = {404: f"no resource at {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
    message = detail.get(exc.status_code, str(exc.detail))
    return problem_response(exc.status_code, message, headers=dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem_response(500, "the server failed on this request; the error is in the server log")


def create_app(settings: Settings, archive: Archive | None = None) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        opened = archive or Archive.open(settings)
        app.state.archive = opened
        try:
            yield
        finally:
            if archive is None:
                opened.close()

    middleware = []
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "HEAD", "POST", "DELETE", "OPTIONS"],
                allow_headers=["*"],
                expose_headers=["Content-Location", "Content-Length", "ETag", "Last-Modified", "Warning"],
            )
        )
    app = Starlette(
        routes=[
            Route("/openapi.json", openapi_json, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Mount(settings.base_path, routes=dicomweb_routes()),
        ],
        middleware=middleware,
        exception_handlers={HTTPProblem: _problem, HTTPException: _http_error, Exception: _unexpected},
        lifespan=lifespan,
    )
    if archive is not None:
        app.state.archive = archive
    return app
