"""Anonymized answers end to end: nothing the Basic Profile removes or replaces survives in any answer a
researcher gets (search, metadata, instances, WADO-URI, zip, bulk data), pseudonyms are stable across requests
and restarts and resolve back, and matching cannot probe hidden values."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pydicom
from starlette.testclient import TestClient

from dicomweb.app import create_app
from dicomweb.archive import Archive
from dicomweb.policies.identity.issuer import mint_token
from tests.multipart_util import split_multipart
from tests.policies.conftest import World
from tests.policies.fixture_archive import BY_KEY, all_instances

SECRETS = ("Doe", "Roe", "NID-1", "NID-2", "General Hospital", "1 Main Street", "Tech", "House", "19700102",
           "20240315", "ACC-S1", "ACC-S3", "ACME", "a private value")


def _original_uids() -> set[str]:
    uids: set[str] = set()
    for study, series_index, number, _ in all_instances():
        uids |= {study.uid, study.series_uid(series_index), study.sop_uid(series_index, number)}
    return uids


def _assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, secret
    for uid in _original_uids():
        assert uid not in text, uid


def _originals() -> dict[str, dict[str, Any]]:
    """Each fixture instance's DICOM JSON, by SOP Instance UID."""
    out = {}
    for _, _, _, data in all_instances():
        ds = pydicom.dcmread(io.BytesIO(data))
        out[ds.SOPInstanceUID] = ds.to_json_dict(bulk_data_threshold=1 << 30, bulk_data_element_handler=lambda _: "")
    return out


def _assert_profile_applied(world: World, answer: dict[str, Any]) -> None:
    """No attribute the Basic Profile removes or replaces keeps its original value in ``answer``."""
    deid = world.client.app.state.deid  # type: ignore[attr-defined]
    original = _originals()[deid.resolve(answer["00080018"]["Value"][0])]
    changed = [key for key, element in original.items()
               if deid.removes(int(key, 16)) and element.get("Value")
               and answer.get(key, {}).get("Value") == element["Value"]]
    assert not changed, changed


def _dataset_text(ds: pydicom.Dataset) -> str:
    return json.dumps(ds.to_json_dict(bulk_data_threshold=1 << 30, bulk_data_element_handler=lambda _: ""))


def test_every_anonymized_answer_is_clean(world: World) -> None:
    found = world.call("researcher", "GET", "/dicom-web/instances", params={"includefield": "all"})
    assert found.status_code == 200
    _assert_clean(found.text)
    for dataset in found.json():
        assert dataset["00100010"]["Value"][0]["Alphabetic"].startswith("R")
        _assert_profile_applied(world, dataset)
        assert dataset["00120062"]["Value"] == ["YES"]
    studies = {d["0020000D"]["Value"][0] for d in found.json()}
    assert len(studies) == 2
    for study in studies:
        metadata = world.call("researcher", "GET", f"/dicom-web/studies/{study}/metadata")
        assert metadata.status_code == 200
        _assert_clean(metadata.text)
        for item in metadata.json():
            assert "00091010" not in item and "Value" not in item.get("00080080", {})
            _assert_profile_applied(world, item)
        instances = world.call("researcher", "GET", f"/dicom-web/studies/{study}")
        assert instances.status_code == 200
        parts = split_multipart(instances.headers["content-type"], instances.content)
        assert parts
        for _, body in parts:
            ds = pydicom.dcmread(io.BytesIO(body))
            _assert_clean(_dataset_text(ds) + _dataset_text(ds.file_meta))
            _assert_profile_applied(world, ds.to_json_dict(bulk_data_threshold=1 << 30,
                                                           bulk_data_element_handler=lambda _: ""))
            assert ds.pixel_array.shape == (8, 8)
        zipped = world.call("researcher", "GET", f"/dicom-web/studies/{study}", headers={"Accept": "application/zip"})
        assert zipped.status_code == 200
        with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
            assert len(archive.namelist()) == len(parts)
            for name in archive.namelist():
                _assert_clean(name + _dataset_text(pydicom.dcmread(io.BytesIO(archive.read(name)))))


def test_pixels_pass_unchanged_and_other_bulk_data_is_withheld(world: World) -> None:
    deid = world.client.app.state.deid  # type: ignore[attr-defined]
    s1 = BY_KEY["S1"]
    world.call("researcher", "GET", "/dicom-web/instances")
    path = (f"/dicom-web/studies/{deid.pseudonym(s1.uid)}/series/{deid.pseudonym(s1.series_uid(0))}"
            f"/instances/{deid.pseudonym(s1.sop_uid(0, 1))}")
    frame = world.call("researcher", "GET", f"{path}/frames/1", headers={"Accept": "multipart/related; "
                                                                            "type=application/octet-stream"})
    assert frame.status_code == 200
    original = pydicom.dcmread(io.BytesIO(next(d for s, i, n, d in all_instances()
                                               if (s.key, i, n) == ("S1", 0, 1))))
    assert split_multipart(frame.headers["content-type"], frame.content)[0][1] == original.PixelData
    assert world.call("researcher", "GET", f"{path}/bulkdata/00091010").status_code == 404


def test_wado_uri_gives_a_clean_instance(world: World) -> None:
    deid = world.client.app.state.deid  # type: ignore[attr-defined]
    s3 = BY_KEY["S3"]
    world.call("researcher", "GET", "/dicom-web/instances")
    answer = world.call("researcher", "GET", "/dicom-web/wado", params={
        "requestType": "WADO", "studyUID": deid.pseudonym(s3.uid), "seriesUID": deid.pseudonym(s3.series_uid(0)),
        "objectUID": deid.pseudonym(s3.sop_uid(0, 0)), "contentType": "application/dicom"})
    assert answer.status_code == 200
    ds = pydicom.dcmread(io.BytesIO(answer.content))
    _assert_clean(_dataset_text(ds))
    assert ds.SOPInstanceUID == deid.pseudonym(s3.sop_uid(0, 0))


def test_matching_on_removed_attributes_reveals_nothing(world: World) -> None:
    for params in ({"PatientName": "Doe*"}, {"InstitutionName": "General*"}, {"AccessionNumber": "ACC-S1"},
                   {"StudyInstanceUID": BY_KEY["S1"].uid}):
        answer = world.call("researcher", "GET", "/dicom-web/studies", params=params)
        assert answer.status_code == 204, params
    modality = world.call("researcher", "GET", "/dicom-web/series", params={"Modality": "SR"})
    assert len(modality.json()) == 1  # attributes the profile keeps still match


def test_pseudonyms_are_stable_across_restarts_and_resolve_back(world: World) -> None:
    first = world.call("researcher", "GET", "/dicom-web/studies").json()
    settings = world.settings
    archive = Archive.open(settings)
    try:
        with TestClient(create_app(settings, archive)) as restarted:
            token = mint_token(settings, archive.engine, "researcher")
            headers = {"Authorization": f"Bearer {token}"}
            again = restarted.get("/dicom-web/studies", headers=headers).json()
            assert [d["0020000D"] for d in again] == [d["0020000D"] for d in first]
            study = first[0]["0020000D"]["Value"][0]
            metadata: list[dict[str, Any]] = restarted.get(f"/dicom-web/studies/{study}/metadata",
                                                           headers=headers).json()
            assert {m["0020000D"]["Value"][0] for m in metadata} == {study}
    finally:
        archive.close()
