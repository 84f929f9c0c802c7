"""The profile applied to every readable test file, as DICOM JSON and as a pydicom data set."""

from __future__ import annotations

import copy
import json
from typing import Any

import pydicom
import pytest

from dicomweb.policies.deid import Deidentifier

from ..conftest import data_path
from .helpers import assert_deidentified, bulk_handler, readable_entries

ENTRIES = readable_entries()
# The test files include broken values on purpose; pydicom warns about each as it reads them.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
KEY = "PATIENT-1^ISSUER"


@pytest.fixture(scope="module")
def deid() -> Deidentifier:
    return Deidentifier(b"test secret", None)


def test_data_set_is_large_enough() -> None:
    assert len(ENTRIES) > 200


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["path"] for e in ENTRIES])
def test_json_answer(entry: dict[str, Any], deid: Deidentifier) -> None:
    ds = pydicom.dcmread(data_path(entry))
    original = ds.to_json_dict(1024, bulk_handler(entry))
    before = copy.deepcopy(original)
    out = deid.json_dataset(original, KEY)
    assert original == before  # the input is not mutated
    assert_deidentified(deid, original, out, entry, KEY)
    json.dumps(out)


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["path"] for e in ENTRIES])
def test_dataset(entry: dict[str, Any], deid: Deidentifier) -> None:
    ds = pydicom.dcmread(data_path(entry))
    before = ds.to_json_dict(1024, bulk_handler(entry))
    out = deid.dataset(ds, KEY)
    assert ds.to_json_dict(1024, bulk_handler(entry)) == before  # the input is not mutated
    assert_deidentified(deid, before, out.to_json_dict(1024, lambda elem: "bulk"), entry, KEY)
    media = str(ds.file_meta.MediaStorageSOPInstanceUID)
    assert out.file_meta.MediaStorageSOPInstanceUID == deid.pseudonym(media)
    if "PixelData" in ds:
        assert out.PixelData == ds.PixelData
