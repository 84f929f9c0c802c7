"""REST for the worklist: create and list scheduled procedure steps, read a performed step.

POST /worklist/items      one MWL item as DICOM JSON (application/dicom+json) -> 201 with the stored item
GET  /worklist/items      items as a DICOM JSON array; query parameters are MWL matching keys by keyword
                          (PatientID, AccessionNumber, Modality, ScheduledStationAETitle,
                          ScheduledProcedureStepStartDate=20240101-20240131, ...)
GET  /worklist/performed/{uid}  an MPPS: status, its DICOM JSON and its series with the instances stored
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...http.problems import HTTPProblem
from .mpps import performed_step
from .worklist import STEP_COLUMNS, WorklistError, create_item, search_items

DICOM_JSON = "application/dicom+json"
MAX_BODY = 1 << 20
STEP_KEYWORDS = {"Modality", "ScheduledStationAETitle", "ScheduledProcedureStepStartDate",
                 "ScheduledProcedureStepStartTime", "ScheduledProcedureStepID", "ScheduledProcedureStepStatus"}
assert len(STEP_KEYWORDS) == len(STEP_COLUMNS)


def _json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")), status_code=status,
                    media_type=DICOM_JSON, headers=headers)


async def create_worklist_item(request: Request) -> Response:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in (DICOM_JSON, "application/json"):
        raise HTTPProblem(415, "send the worklist item as application/dicom+json")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPProblem(413, f"a worklist item is at most {MAX_BODY} bytes")
    try:
        parsed = json.loads(body)
        if isinstance(parsed, list) and len(parsed) == 1:
            parsed = parsed[0]
        if not isinstance(parsed, dict):
            raise ValueError("not one DICOM JSON object")
        item = Dataset.from_json(parsed)
    except (ValueError, TypeError, KeyError) as exc:
        raise HTTPProblem(400, f"the body is not one DICOM JSON data set: {exc}") from None
    engine = request.app.state.archive.engine
    try:
        stored = await anyio.to_thread.run_sync(create_item, engine, item)
    except WorklistError as exc:
        raise HTTPProblem(409 if "already exists" in str(exc) else 400, str(exc)) from None
    step_id = stored.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID
    location = f"/worklist/items?ScheduledProcedureStepID={step_id}"
    return _json_response(stored.to_json_dict(), 201, {"Location": location})


def _identifier(params: Any) -> tuple[Dataset, int]:
    identifier, step = Dataset(), Dataset()
    limit = 1000
    for name, value in params.multi_items():
        if name == "limit":
            if not value.isdigit() or not 0 < int(value) <= 1000:
                raise HTTPProblem(400, f"limit must be 1 to 1000, not {value!r}")
            limit = int(value)
            continue
        tag = tag_for_keyword(name)
        if tag is None:
            raise HTTPProblem(400, f"{name} is not a DICOM keyword")
        target = step if name in STEP_KEYWORDS else identifier
        target.add_new(tag, _vr(tag), value)
    if len(step):
        identifier.ScheduledProcedureStepSequence = [step]
    return identifier, limit


def _vr(tag: int) -> str:
    vr = dictionary_VR(tag)
    if vr == "SQ":
        raise HTTPProblem(400, "sequence attributes cannot be given as query parameters")
    return vr


async def list_worklist_items(request: Request) -> Response:
    identifier, limit = _identifier(request.query_params)
    engine = request.app.state.archive.engine
    try:
        items = await anyio.to_thread.run_sync(search_items, engine, identifier, limit)
    except WorklistError as exc:
        raise HTTPProblem(400, str(exc)) from None
    return _json_response([i.to_json_dict() for i in items])


async def get_performed_step(request: Request) -> Response:
    uid = request.path_params["uid"]
    found = await anyio.to_thread.run_sync(performed_step, request.app.state.archive.engine, uid)
    if found is None:
        raise HTTPProblem(404, f"no performed procedure step {uid}")
    return Response(json.dumps(found, separators=(",", ":")), media_type="application/json")


def worklist_routes() -> list[Route]:
    return [
        Route("/worklist/items", create_worklist_item, methods=["POST"]),
        Route("/worklist/items", list_worklist_items, methods=["GET"]),
        Route("/worklist/performed/{uid}", get_performed_step, methods=["GET"]),
    ]
