"""Exact answers of the profile on hand-made DICOM JSON: each kind of action, dates, URLs, markers."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pydicom
import pytest

from dicomweb.policies.deid import Deidentifier

KEY = "P-7^HOSP"
STUDY = "1.2.826.0.1.3680043.2.1125.1"
SERIES = "1.2.826.0.1.3680043.2.1125.2"
SOP = "1.2.826.0.1.3680043.2.1125.3"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def _shifted(deid: Deidentifier, day: str) -> str:
    moved = date(int(day[:4]), int(day[4:6]), int(day[6:])) + timedelta(days=deid.date_shift_days(KEY))
    return moved.strftime("%Y%m%d")


def sample() -> dict[str, Any]:
    return {
        "00080016": {"vr": "UI", "Value": [CT_IMAGE]},
        "00080018": {"vr": "UI", "Value": [SOP]},
        "00080020": {"vr": "DA", "Value": ["20240229"]},
        "00080030": {"vr": "TM", "Value": ["101500"]},
        "0008002A": {"vr": "DT", "Value": ["20240301235959.25+0100"]},
        "00080050": {"vr": "SH", "Value": ["ACC-991"]},
        "00080060": {"vr": "CS", "Value": ["CT"]},
        "00080080": {"vr": "LO", "Value": ["St. Elsewhere"]},
        "00080090": {"vr": "PN", "Value": [{"Alphabetic": "House^Gregory"}]},
        "00081030": {"vr": "LO", "Value": ["CT head"]},
        "00081190": {"vr": "UR", "Value": [f"https://pacs.example:8443/dicom-web/studies/{STUDY}"]},
        "00081140": {"vr": "SQ", "Value": [{
            "00081150": {"vr": "UI", "Value": [CT_IMAGE]},
            "00081155": {"vr": "UI", "Value": [SOP + ".9"]},
            "00091001": {"vr": "LO", "Value": ["private in item"]},
        }]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
        "00100020": {"vr": "LO", "Value": ["P-7"]},
        "00100030": {"vr": "DA", "Value": ["19700101"]},
        "00101000": {"vr": "LO", "Value": ["OTHER-1"]},
        "00180015": {"vr": "CS", "Value": ["HEAD"]},
        "0020000D": {"vr": "UI", "Value": [STUDY]},
        "0020000E": {"vr": "UI", "Value": [SERIES]},
        "00200010": {"vr": "SH", "Value": ["S1"]},
        "00400A123": {"vr": "PN"},  # not a tag: dropped
        "0040A123": {"vr": "PN", "Value": [{"Alphabetic": "Observer^Olga"}]},
        "00291010": {"vr": "OB", "InlineBinary": "AAAA"},
        "60003000": {"vr": "OW", "BulkDataURI": f"https://pacs.example/dicom-web/studies/{STUDY}/bulk/60003000"},
        "60000010": {"vr": "US", "Value": [512]},
        "7FE00010": {"vr": "OW", "BulkDataURI":
                     f"https://pacs.example/dicom-web/studies/{STUDY}/series/{SERIES}/instances/{SOP}/bulk?x={SOP}"},
    }


@pytest.fixture
def deid() -> Deidentifier:
    return Deidentifier(b"rules", None)


def test_json_dataset_modified_dates(deid: Deidentifier) -> None:
    research = deid.research_patient_id(KEY)
    p = deid.pseudonym
    out = deid.json_dataset(sample(), KEY)
    assert out == {
        "00080016": {"vr": "UI", "Value": [CT_IMAGE]},
        "00080018": {"vr": "UI", "Value": [p(SOP)]},
        "00080020": {"vr": "DA", "Value": [_shifted(deid, "20240229")]},
        "00080030": {"vr": "TM", "Value": ["101500"]},
        "0008002A": {"vr": "DT", "Value": [_shifted(deid, "20240301") + "235959.25+0100"]},
        "00080050": {"vr": "SH"},
        "00080060": {"vr": "CS", "Value": ["CT"]},
        "00080080": {"vr": "LO"},
        "00080090": {"vr": "PN"},
        "00081140": {"vr": "SQ", "Value": [{
            "00081150": {"vr": "UI", "Value": [CT_IMAGE]},
            "00081155": {"vr": "UI", "Value": [p(SOP + ".9")]},
        }]},
        "00081190": {"vr": "UR", "Value": [f"https://pacs.example:8443/dicom-web/studies/{p(STUDY)}"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": research}]},
        "00100020": {"vr": "LO", "Value": [research]},
        "00100030": {"vr": "DA"},
        "00120062": {"vr": "CS", "Value": ["YES"]},
        "00120063": {"vr": "LO", "Value": ["PS3.15 E.1 Basic Profile with Retain Long. Modified Dates"]},
        "00120064": {"vr": "SQ", "Value": [
            {"00080100": {"vr": "SH", "Value": ["113100"]}, "00080102": {"vr": "SH", "Value": ["DCM"]},
             "00080104": {"vr": "LO", "Value": ["Basic Application Confidentiality Profile"]}},
            {"00080100": {"vr": "SH", "Value": ["113107"]}, "00080102": {"vr": "SH", "Value": ["DCM"]},
             "00080104": {"vr": "LO", "Value": ["Retain Longitudinal Temporal Information Modified Dates Option"]}},
        ]},
        "00180015": {"vr": "CS", "Value": ["HEAD"]},
        "0020000D": {"vr": "UI", "Value": [p(STUDY)]},
        "0020000E": {"vr": "UI", "Value": [p(SERIES)]},
        "00200010": {"vr": "SH"},
        "00280303": {"vr": "CS", "Value": ["MODIFIED"]},
        "0040A123": {"vr": "PN", "Value": [{"Alphabetic": "ANONYMIZED"}]},
        "60000010": {"vr": "US", "Value": [512]},
        "7FE00010": {"vr": "OW", "BulkDataURI":
                     f"https://pacs.example/dicom-web/studies/{p(STUDY)}/series/{p(SERIES)}/instances/{p(SOP)}"
                     f"/bulk?x={p(SOP)}"},
    }


def test_json_dataset_dates_removed() -> None:
    deid = Deidentifier(b"rules", None, dates="remove")
    out = deid.json_dataset(sample(), KEY)
    assert out["00080020"] == {"vr": "DA"}  # Study Date: Z
    assert out["00080030"] == {"vr": "TM"}  # Study Time: Z
    assert "0008002A" not in out  # Acquisition DateTime: X/D
    assert out["00280303"] == {"vr": "CS", "Value": ["REMOVED"]}
    assert out["00120063"] == {"vr": "LO", "Value": ["PS3.15 E.1 Basic Profile"]}
    assert [item["00080100"]["Value"] for item in out["00120064"]["Value"]] == [["113100"]]


def test_date_shift_is_per_patient_and_keeps_intervals(deid: Deidentifier) -> None:
    first = deid.json_dataset({"00080020": {"vr": "DA", "Value": ["20200101"]}}, KEY)
    second = deid.json_dataset({"00080020": {"vr": "DA", "Value": ["20200111"]}}, KEY)
    a, b = (date.fromisoformat(x["00080020"]["Value"][0]) for x in (first, second))
    assert (b - a).days == 10
    assert (a - date(2020, 1, 1)).days == deid.date_shift_days(KEY)
    assert -3650 <= deid.date_shift_days(KEY) <= -1
    assert len({deid.date_shift_days(f"patient-{i}") for i in range(50)}) > 40


def test_bad_dates_are_emptied(deid: Deidentifier) -> None:
    out = deid.json_dataset({"00080020": {"vr": "DA", "Value": ["2024"]},
                             "0008002A": {"vr": "DT", "Value": ["20241301"]}}, KEY)
    assert out["00080020"] == {"vr": "DA"}
    assert out["0008002A"] == {"vr": "DT"}


def test_unknown_instance_uid_attributes_are_replaced_and_class_uids_kept(deid: Deidentifier) -> None:
    obj = {
        "00081167": {"vr": "UI", "Value": [SOP]},  # Multi-frame Source SOP Instance UID: not in the table
        "00020010": {"vr": "UI", "Value": ["1.2.840.10008.1.2.1"]},
        "0008010C": {"vr": "UI", "Value": ["1.2.3.4.5"]},  # Coding Scheme UID identifies a scheme
        "00081150": {"vr": "UI", "Value": ["1.2.3.4.6"]},  # Referenced SOP Class UID (a private class)
    }
    out = deid.json_dataset(obj, KEY)
    assert out["00081167"] == {"vr": "UI", "Value": [deid.pseudonym(SOP)]}
    assert out["00020010"] == obj["00020010"]
    assert out["0008010C"] == obj["0008010C"]
    assert out["00081150"] == obj["00081150"]


def test_un_values_that_need_changing_are_dropped(deid: Deidentifier) -> None:
    obj = {"00100010": {"vr": "UN", "InlineBinary": "RG9lXkphbmU="},
           "0020000D": {"vr": "UN", "InlineBinary": "MS4yLjM="},
           "00080060": {"vr": "UN", "InlineBinary": "Q1Q="}}
    out = deid.json_dataset(obj, KEY)
    assert "00100010" not in out and "0020000D" not in out
    assert out["00080060"] == {"vr": "UN", "InlineBinary": "Q1Q="}


@pytest.mark.parametrize(("tag", "removes", "matchable"), [
    (0x00100010, True, False),  # Patient's Name: Z (here the research ID)
    (0x00100020, True, False),
    (0x00100030, True, False),
    (0x0020000D, True, False),  # Study Instance UID: U
    (0x00080016, False, False),  # SOP Class UID: kept, but UIDs are matched through resolve
    (0x00080060, False, True),  # Modality: not in the table
    (0x00180015, False, True),  # Body Part Examined
    (0x00081030, True, False),  # Study Description: X
    (0x00080050, True, False),  # Accession Number: Z
    (0x00080020, True, False),  # Study Date: shifted
    (0x00080030, False, True),  # Study Time: kept with modified dates
    (0x00081140, False, False),  # Referenced Image Sequence: kept, its UIDs replaced
    (0x00091001, True, False),  # private
    (0x60003000, True, False),  # Overlay Data
    (0x60024000, True, False),  # Overlay Comments
    (0x50000010, True, False),  # a curve
    (0x60000010, False, True),  # Overlay Rows
    (0xFFFCFFFC, True, False),  # Data Set Trailing Padding
])
def test_removes_and_matching(deid: Deidentifier, tag: int, removes: bool, matchable: bool) -> None:
    assert deid.removes(tag) is removes
    assert deid.kept_for_matching(tag) is matchable


def test_study_time_not_matchable_when_dates_removed() -> None:
    deid = Deidentifier(b"rules", None, dates="remove")
    assert deid.removes(0x00080030) is True
    assert deid.kept_for_matching(0x00080030) is False


def test_json_many_remembers_once_per_page() -> None:
    deid = Deidentifier(b"rules", None)
    objects = [({"0020000D": {"vr": "UI", "Value": [f"1.2.3.{i}"]}}, f"P{i}") for i in range(3)]
    out = deid.json_many(objects)
    assert [o["0020000D"]["Value"] for o in out] == [[deid.pseudonym(f"1.2.3.{i}")] for i in range(3)]
    assert out == [deid.json_dataset(obj, key) for obj, key in objects]


@pytest.mark.parametrize(("value", "withheld"), [(["YES"], True), (["NO"], False), (None, False)])
def test_burned_in_annotation_is_withheld(value: list[str] | None, withheld: bool) -> None:
    obj: dict[str, Any] = {} if value is None else {"00280301": {"vr": "CS", "Value": value}}
    assert Deidentifier.withholds(obj) is withheld
    ds = pydicom.Dataset()
    if value is not None:
        ds.BurnedInAnnotation = value[0]
    assert Deidentifier.withholds(ds) is withheld
