"""Differential property test: random small archives and random queries; SQL search == the reference matcher."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from sqlalchemy import delete, select

from dicomweb.archive import Archive
from dicomweb.index.models import Instance, Patient, Series, Study
from dicomweb.services.query import Query, QueryError, parse_key, search
from dicomweb.services.staging import StagedBlob
from dicomweb.settings import load_settings

from . import reference

NAMES = ["Smith^John", "smith^Jane", "Müller^Jürgen", "Yamada^Tarou=山田^太郎=やまだ^たろう", "O'Neil^Ann^B", "",
         "Doe", "ÉLODIE^Zoé", "Hong^Gildong=洪^吉洞=홍^길동", "SMITH^JOHN PAUL"]
DATES = ["", "20200101", "20200615", "20191231", "20210101"]
TIMES = ["", "1010", "101010.5", "235959", "08", "101000"]
TEXTS = ["", "Head CT", "head ct", "Chest_100%", "a[b]c", "ÄBC"]
CODES = ["", "A1", "a1", "ACC_2", "X?Y"]
MODALITIES = ["CT", "MR", "US", ""]
SOP_CLASSES = ["1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"]

TAGS = {
    "PatientName": 0x00100010, "PatientID": 0x00100020, "StudyDate": 0x00080020, "StudyTime": 0x00080030,
    "AccessionNumber": 0x00080050, "StudyDescription": 0x00081030, "ReferringPhysicianName": 0x00080090,
    "ModalitiesInStudy": 0x00080061, "SOPClassesInStudy": 0x00080062, "Modality": 0x00080060,
    "SeriesNumber": 0x00200011, "SeriesDescription": 0x0008103E, "PerformedProcedureStepStartDate": 0x00400244,
    "OperatorsName": 0x00081070, "StationName": 0x00081010, "InstanceNumber": 0x00200013, "SOPClassUID": 0x00080016,
    "StudyInstanceUID": 0x0020000D, "SeriesInstanceUID": 0x0020000E,
}


def _uid(kind: int, number: int) -> str:
    # Deterministic: hypothesis replays draws that depend on these values.
    return f"1.2.826.0.1.3680043.9.7433.{kind}.{number + 1}"


patients = st.lists(st.tuples(st.sampled_from(["P1", "p1", "P-2", "X", "Ω9"]), st.sampled_from(NAMES)),
                    min_size=1, max_size=3, unique_by=lambda p: p[0])
studies = st.lists(st.fixed_dictionaries({
    "patient": st.integers(0, 2), "StudyDate": st.sampled_from(DATES), "StudyTime": st.sampled_from(TIMES),
    "AccessionNumber": st.sampled_from(CODES), "StudyDescription": st.sampled_from(TEXTS),
    "ReferringPhysicianName": st.sampled_from(NAMES),
}), min_size=1, max_size=4)
series_list = st.lists(st.fixed_dictionaries({
    "study": st.integers(0, 3), "Modality": st.sampled_from(MODALITIES),
    "SeriesNumber": st.sampled_from([None, 1, 2, 10]), "SeriesDescription": st.sampled_from(TEXTS),
    "PerformedProcedureStepStartDate": st.sampled_from(DATES), "OperatorsName": st.sampled_from(NAMES),
    "StationName": st.sampled_from(CODES),
    "requests": st.lists(st.tuples(st.sampled_from(CODES), st.sampled_from(CODES)), max_size=2),
}), min_size=1, max_size=5)
instances = st.lists(st.fixed_dictionaries({
    "series": st.integers(0, 4), "InstanceNumber": st.sampled_from([None, 1, 2, 3]),
    "SOPClassUID": st.sampled_from(SOP_CLASSES),
}), min_size=1, max_size=8)


def _part10(ds: Dataset) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def build_archive(archive: Archive, pats: list[Any], stds: list[Any], sers: list[Any], insts: list[Any]) -> tuple[
        list[reference.Entity], dict[str, list[reference.Entity]]]:
    """Store the generated instances; the reference model of what was stored, with database row ids."""
    study_uids = [_uid(1, i) for i in range(len(stds))]
    series_uids = [_uid(2, i) for i in range(len(sers))]
    items: list[tuple[str, str, reference.Item]] = []
    for order, inst in enumerate(insts):
        ser = sers[inst["series"] % len(sers)]
        s_index = ser["study"] % len(stds)
        study = stds[s_index]
        pid, pname = pats[study["patient"] % len(pats)]
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID, ds.SOPInstanceUID = inst["SOPClassUID"], _uid(3, order)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uids[s_index], series_uids[sers.index(ser)]
        ds.PatientID, ds.PatientName = pid, pname
        for keyword in ("StudyDate", "StudyTime", "AccessionNumber", "StudyDescription", "ReferringPhysicianName"):
            setattr(ds, keyword, study[keyword])
        for keyword in ("Modality", "SeriesDescription", "PerformedProcedureStepStartDate", "OperatorsName",
                        "StationName"):
            setattr(ds, keyword, ser[keyword])
        if ser["SeriesNumber"] is not None:
            ds.SeriesNumber = ser["SeriesNumber"]
        if inst["InstanceNumber"] is not None:
            ds.InstanceNumber = inst["InstanceNumber"]
        seq_items = []
        for sps, rp in ser["requests"]:
            item = Dataset()
            item.ScheduledProcedureStepID, item.RequestedProcedureID = sps, rp
            seq_items.append(item)
        if seq_items:
            ds.RequestAttributesSequence = seq_items
        result = archive.ingest.store(StagedBlob.from_bytes(_part10(ds)))
        assert result.outcome == "stored", result.message
        attrs: dict[int, list[Any]] = {TAGS[k]: [v] for k, v in (
            ("PatientID", pid), ("PatientName", pname), *((k, study[k]) for k in (
                "StudyDate", "StudyTime", "AccessionNumber", "StudyDescription", "ReferringPhysicianName")),
            *((k, ser[k]) for k in ("Modality", "SeriesDescription", "PerformedProcedureStepStartDate",
                                    "OperatorsName", "StationName")),
            ("SOPClassUID", inst["SOPClassUID"]), ("StudyInstanceUID", ds.StudyInstanceUID),
            ("SeriesInstanceUID", ds.SeriesInstanceUID)) if v != ""}
        attrs[0x00080018] = [ds.SOPInstanceUID]
        for name in ("SeriesNumber", "InstanceNumber"):
            value = ser.get(name) if name == "SeriesNumber" else inst[name]
            if value is not None:
                attrs[TAGS[name]] = [str(value)]
        if seq_items:
            attrs[0x00400275] = [{0x00400009: [sps] if sps else [], 0x00401001: [rp] if rp else []}
                                 for sps, rp in ser["requests"]]
        items.append((ds.StudyInstanceUID, ds.SeriesInstanceUID, reference.Item(attrs, order)))
    with archive.engine.connect() as conn:
        study_ids = dict(conn.execute(select(Study.study_instance_uid, Study.id)).all())
        series_ids = dict(conn.execute(select(Series.series_instance_uid, Series.id)).all())
    study_entities: dict[str, reference.Entity] = {}
    series_entities: dict[str, reference.Entity] = {}
    series_of: dict[str, list[reference.Entity]] = {}
    for study_uid, series_uid, item in items:
        study_entities.setdefault(study_uid, reference.Entity(study_uid, study_ids[study_uid])).instances.append(item)
        if series_uid not in series_entities:
            series_entities[series_uid] = reference.Entity(series_uid, series_ids[series_uid])
            series_of.setdefault(study_uid, []).append(series_entities[series_uid])
        series_entities[series_uid].instances.append(item)
    return list(study_entities.values()), series_of


def _values(entities: list[reference.Entity], tag: int) -> list[str]:
    found = {str(v) for e in entities for i in e.instances for v in i.attrs.get(tag, []) if not isinstance(v, dict)}
    return sorted(found) or ["x"]


@st.composite
def query_values(draw: st.DrawFn, tag: int, pool: list[str]) -> str:
    base = draw(st.sampled_from(pool))
    mutation = draw(st.sampled_from(["exact", "universal", "empty", "upper", "lower", "prefix", "suffix", "qmark",
                                     "list", "range", "open_low", "open_high", "group", "star"]))
    other = draw(st.sampled_from(pool))
    if mutation == "universal":
        return ""
    if mutation == "empty":
        return '""'
    if mutation == "upper":
        return base.upper()
    if mutation == "lower":
        return base.lower()
    if mutation == "prefix":
        return base[: draw(st.integers(0, max(len(base), 0)))] + "*"
    if mutation == "suffix":
        return "*" + base[draw(st.integers(0, max(len(base), 0))):]
    if mutation == "qmark" and base:
        i = draw(st.integers(0, len(base) - 1))
        return base[:i] + "?" + base[i + 1:]
    if mutation == "list":
        return f"{base}\\{other}"
    if mutation in ("range", "open_low", "open_high"):
        low, high = sorted([base, other])
        return {"range": f"{low}-{high}", "open_low": f"-{high}", "open_high": f"{low}-"}[mutation]
    if mutation == "group" and "=" in base:
        return base.split("=")[draw(st.integers(0, 2))]
    if mutation == "star":
        return "*"
    return base


@pytest.fixture
def archive(database_url: str, tmp_path: Path) -> Iterator[Archive]:
    opened = Archive.open(load_settings(data_dir=tmp_path / "data", database_url=database_url, fsync=False),
                          ingest_processes=0)
    yield opened
    opened.close()


def _wipe(archive: Archive) -> None:
    with archive.engine.begin() as conn:
        for model in (Instance, Series, Study, Patient):
            conn.execute(delete(model))


# Shrinking re-ingests an archive per step (minutes); a failure is reported unshrunk but complete.
@settings(max_examples=20, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(pats=patients, stds=studies, sers=series_list, insts=instances, data=st.data())
def test_sql_matches_reference(archive: Archive, pats: Any, stds: Any, sers: Any, insts: Any, data: Any) -> None:
    _wipe(archive)
    study_entities, series_of = build_archive(archive, pats, stds, sers, insts)
    all_series = [s for group in series_of.values() for s in group]
    for _ in range(12):
        level = data.draw(st.sampled_from(["study", "series", "instance"]))
        names = data.draw(st.lists(st.sampled_from([*TAGS, "RequestAttributesSequence"]), min_size=1, max_size=3,
                                   unique=True))
        keys = []
        for name in names:
            if name == "RequestAttributesSequence":
                child = data.draw(st.sampled_from([0x00400009, 0x00401001]))
                pool = sorted({v for s in all_series for i in s.instances for it in i.attrs.get(0x00400275, [])
                               for v in it[child]}) or ["A1"]
                raw = data.draw(query_values(child, pool))
                try:
                    keys.append(parse_key(0x00400275, "", (parse_key(child, raw),)))
                except QueryError:
                    continue
                continue
            tag = TAGS[name]
            raw = data.draw(query_values(tag, _values(study_entities, tag)))
            try:
                keys.append(parse_key(tag, raw))
            except QueryError:
                continue
        assume(keys)
        query = Query(level=level, keys=keys, limit=data.draw(st.integers(1, 6)), offset=data.draw(st.integers(0, 3)),
                      fuzzy=data.draw(st.booleans()), pn_case_insensitive=data.draw(st.booleans()))
        got = search(archive.engine, query)
        uid_tags = {"study": ("0020000D",), "series": ("0020000D", "0020000E"),
                    "instance": ("0020000D", "0020000E", "00080018")}[level]
        answer = [tuple(ds[t]["Value"][0] for t in uid_tags) for ds in got.datasets]
        expected = reference.search(query, study_entities, series_of)
        assert answer == expected, (query, answer, expected)
        if level == "study":
            by_uid = {s.uid: s for s in study_entities}
            for ds in got.datasets:
                study = by_uid[ds["0020000D"]["Value"][0]]
                modalities = sorted({i.first(0x00080060) for i in study.instances} - {""})
                assert ds["00080061"].get("Value", []) == modalities
                assert ds["00201208"]["Value"] == [len(study.instances)]
                assert ds["00201206"]["Value"] == [len(series_of[study.uid])]
