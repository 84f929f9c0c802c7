"""Admin API: jobs (state, retries, failures), tiers (bytes and studies), scheduling moves and lifecycle passes."""

from __future__ import annotations

from typing import Any

import anyio
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..backends.lifecycle import usage
from ..dicom.uids import is_valid_uid
from ..http.problems import HTTPProblem
from ..index.models import Study
from . import Jobs
from .store import STATES


def _jobs(request: Request) -> Jobs:
    background = getattr(request.app.state, "background", None)
    if background is None:
        raise HTTPProblem(503, "the job engine is not running in this server", headers={"Retry-After": "5"})
    jobs: Jobs = background.jobs
    return jobs


def _int(request: Request, name: str, default: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 0 <= int(raw) <= high:
        raise HTTPProblem(400, f"{name} must be a whole number from 0 to {high}, not {raw!r}")
    return int(raw)


def _job_id(request: Request) -> int:
    raw = request.path_params["job"]
    if not raw.isdigit():
        raise HTTPProblem(400, f"a job id is a whole number, not {raw!r}")
    if int(raw) > 2**31 - 1:  # beyond any id the index hands out (and its integer column)
        raise HTTPProblem(404, f"there is no job {raw}")
    return int(raw)


async def list_jobs(request: Request) -> Response:
    jobs = _jobs(request)
    state = request.query_params.get("state")
    if state is not None and state not in STATES:
        raise HTTPProblem(400, f"state must be one of {', '.join(STATES)}, not {state!r}")
    limit, offset = _int(request, "limit", 100, 1000), _int(request, "offset", 0, 10**9)

    def read() -> dict[str, Any]:
        return {"engine": jobs.engine.name, "counts": jobs.store.counts(),
                "jobs": [j.as_json() for j in jobs.store.recent(state, limit, offset)]}

    return JSONResponse(await anyio.to_thread.run_sync(read))


async def get_job(request: Request) -> Response:
    jobs, job_id = _jobs(request), _job_id(request)
    job = await anyio.to_thread.run_sync(jobs.store.get, job_id)
    if job is None:
        raise HTTPProblem(404, f"there is no job {job_id}")
    return JSONResponse(job.as_json())


async def retry_job(request: Request) -> Response:
    jobs, job_id = _jobs(request), _job_id(request)
    job = await anyio.to_thread.run_sync(jobs.store.get, job_id)
    if job is None:
        raise HTTPProblem(404, f"there is no job {job_id}")
    if not await anyio.to_thread.run_sync(jobs.retry, job_id):
        raise HTTPProblem(409, f"job {job_id} is {job.state}; only a failed job can be retried")
    return JSONResponse({"id": job_id, "state": "queued"}, status_code=202)


async def list_tiers(request: Request) -> Response:
    archive = request.app.state.archive
    found = await anyio.to_thread.run_sync(usage, archive.engine, archive.tiers)
    return JSONResponse([{"name": t.name, "role": t.role, "url": t.url, "capacityBytes": t.capacity_bytes,
                          "studies": t.studies, "instances": t.instances, "bytes": t.bytes} for t in found])


async def run_lifecycle(request: Request) -> Response:
    jobs = _jobs(request)
    job_id, _ = await anyio.to_thread.run_sync(jobs.submit, "apply_lifecycle", {}, "lifecycle")
    return JSONResponse({"id": job_id}, status_code=202, headers={"Location": f"/admin/jobs/{job_id}"})


async def move_study(request: Request) -> Response:
    """Schedule a study's move to a tier, e.g. up to the local tier ahead of a worklist appointment."""
    jobs, archive = _jobs(request), request.app.state.archive
    study = request.path_params["study"]
    target = request.query_params.get("tier", "")
    if not is_valid_uid(study):
        raise HTTPProblem(400, f"{study!r} is not a valid Study Instance UID")
    if target not in archive.tiers.tiers:
        raise HTTPProblem(400, f"tier must name a configured tier ({', '.join(archive.tiers.tiers)}), not {target!r}")

    def schedule() -> int | None:
        table = Study.__table__  # type: ignore[attr-defined]
        with archive.engine.connect() as conn:
            if conn.execute(select(table.c.id).where(table.c.study_instance_uid == study)).first() is None:
                return None
        return jobs.submit("migrate_study", {"study": study, "target": target}, f"study:{study}")[0]

    job_id = await anyio.to_thread.run_sync(schedule)
    if job_id is None:
        raise HTTPProblem(404, f"there is no study {study}")
    return JSONResponse({"id": job_id}, status_code=202, headers={"Location": f"/admin/jobs/{job_id}"})


def admin_routes() -> list[Route]:
    return [
        Route("/admin/jobs", list_jobs, methods=["GET"]),
        Route("/admin/jobs/{job}", get_job, methods=["GET"]),
        Route("/admin/jobs/{job}/retry", retry_job, methods=["POST"]),
        Route("/admin/tiers", list_tiers, methods=["GET"]),
        Route("/admin/lifecycle", run_lifecycle, methods=["POST"]),
        Route("/admin/studies/{study}/move", move_study, methods=["POST"]),
    ]
