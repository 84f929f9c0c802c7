"""dicomweb-client searches against a live server holding ../shared/data's character-set files (ISO 2022 too)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from tests.conftest import LiveServer, data_index, data_path, start_server

CHARSET_FILES = ["chrH31.dcm", "chrH32.dcm", "chrI2.dcm", "chrKoreanMulti.dcm", "chrGreek.dcm", "chrX1.dcm",
                 "chrX2.dcm", "chrFren.dcm", "chrGerm.dcm", "chrRuss.dcm"]


def _study(name: str) -> str:
    entry = next(e for e in data_index() if e["path"].endswith("/" + name) and e["valid"])
    return str(entry["study_uid"])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[tuple[LiveServer, DICOMwebClient]]:
    server = start_server(tmp_path_factory.mktemp("qido") / "data")
    client = DICOMwebClient(server.url)
    files = [data_path(e) for e in data_index() if e["valid"] and Path(e["path"]).name in CHARSET_FILES]
    client.store_instances([pydicom.dcmread(f) for f in files])
    yield server, client
    server.stop()


def _studies(client: DICOMwebClient, **filters: str) -> set[str]:
    fuzzy = filters.pop("fuzzy", None) == "true"
    found = client.search_for_studies(search_filters=filters, fuzzymatching=fuzzy or None)
    return {ds["0020000D"]["Value"][0] for ds in found}


@pytest.mark.parametrize(("query", "files"), [
    ({"PatientName": "Yamada^Tarou"}, ["chrH31.dcm"]),  # ISO 2022 IR 87, alphabetic group, any case
    ({"PatientName": "yamada*"}, ["chrH31.dcm"]),
    ({"PatientName": "山田^太郎"}, ["chrH31.dcm", "chrH32.dcm"]),  # the ideographic group
    ({"PatientName": "ﾔﾏﾀﾞ*"}, ["chrH32.dcm"]),  # ISO 2022 IR 13 half-width katakana
    ({"PatientName": "홍^길동"}, ["chrI2.dcm"]),  # ISO 2022 IR 149, phonetic group
    ({"PatientName": "김희중"}, ["chrKoreanMulti.dcm"]),
    ({"PatientName": "ΔΙΟΝΥΣΙΟΣ"}, ["chrGreek.dcm"]),  # ISO_IR 126, case-insensitive
    ({"PatientName": "Wang^XiaoDong=王^小東"}, ["chrX1.dcm"]),  # UTF-8, groups matched pairwise
    ({"PatientName": "xiao", "fuzzy": "true"}, ["chrX1.dcm", "chrX2.dcm"]),  # fuzzy: a component prefix
    ({"PatientName": "Люкceмбypг"}, ["chrRuss.dcm"]),  # noqa: RUF001 - the file's own (mixed-script) name
])
def test_person_names_across_character_sets(live: tuple[LiveServer, DICOMwebClient], query: dict[str, str],
                                            files: list[str]) -> None:
    _, client = live
    assert _studies(client, **query) == {_study(f) for f in files}


def test_series_and_instances(live: tuple[LiveServer, DICOMwebClient]) -> None:
    _, client = live
    study = _study("chrH31.dcm")
    series = client.search_for_series(study)
    assert len(series) == 1
    series_uid = series[0]["0020000E"]["Value"][0]
    assert series[0]["00201209"] == {"vr": "IS", "Value": [1]}
    instances = client.search_for_instances(study, series_uid)
    assert [i["00080018"]["Value"][0] for i in instances] == [
        next(e["sop_instance_uid"] for e in data_index() if e["path"].endswith("/chrH31.dcm"))]
    everywhere = client.search_for_instances(search_filters={"PatientName": "山田*"})
    assert {i["0020000D"]["Value"][0] for i in everywhere} == {_study("chrH31.dcm"), _study("chrH32.dcm")}
    # /instances carries the study's attributes too (PS3.18 table 10.6.3-2), decoded to UTF-8.
    names = {i["00100010"]["Value"][0]["Ideographic"] for i in everywhere}
    assert names == {"山田^太郎"}
