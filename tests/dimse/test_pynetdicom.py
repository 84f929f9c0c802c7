"""pynetdicom as SCU: exact status codes, byte-for-byte transfers, storage commitment, worklist, MPPS, robustness."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
    PatientRootQueryRetrieveInformationModelFind,
    StorageCommitmentPushModel,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    Verification,
)

from .conftest import AE as SCP_AE
from .conftest import FILES, Gateway, data_file, dataset_bytes, open_gateway
from .wado import stow, wado_instance

COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"


def _ae(title: str = "PYSCU") -> AE:
    ae = AE(ae_title=title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    return ae


def _store(gateway: Gateway, path: Path, title: str = "PYSCU") -> int:
    ae = _ae(title)
    ds = dcmread(path, stop_before_pixels=True)
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate(*gateway.address, ae_title=SCP_AE)
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(path).Status)  # a path: sent from the file, unread (chunked)
    finally:
        assoc.release()


def test_c_store_then_wado_is_byte_for_byte(gateway: Gateway, tmp_path: Path) -> None:
    for name in FILES:
        path = data_file(name)
        assert _store(gateway, path) == 0x0000
        gateway.settle()
        body = wado_instance(gateway, dcmread(path, stop_before_pixels=True))
        (tmp_path / "wado.dcm").write_bytes(body)
        assert dataset_bytes(tmp_path / "wado.dcm") == dataset_bytes(path)  # exactly what the peer sent
    assert _store(gateway, data_file(FILES[0])) == 0x0000  # the same bytes again: a success


def test_c_store_conflict_and_not_authorized(gateway: Gateway) -> None:
    assert _store(gateway, data_file("pydicom-data/MR2_J2KI.dcm")) == 0x0000
    # The same SOP Instance UID in another encoding: a conflict, never silently replaced (PS3.7 C.5.x).
    assert _store(gateway, data_file("pydicom-data/MR2_UNCI.dcm")) == 0x0111
    assert _store(gateway, data_file(FILES[1]), title="READONLY") == 0x0124


def _get(gateway: Gateway, identifier: Dataset, contexts: list[tuple[str, str]],
         received: list[bytes], cancel_after: int | None = None) -> list[Dataset]:
    ae = _ae()
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    roles = []
    for sop_class, ts in contexts:
        ae.add_requested_context(sop_class, ts)
        roles.append(build_role(sop_class, scp_role=True))

    def on_store(event: Any) -> int:
        received.append(event.encoded_dataset(include_meta=False))
        return 0x0000

    assoc = ae.associate(*gateway.address, ae_title=SCP_AE, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    statuses = []
    try:
        for i, (status, _) in enumerate(assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)):
            statuses.append(status)
            if cancel_after is not None and i + 1 == cancel_after:
                assoc.send_c_cancel(1, query_model=StudyRootQueryRetrieveInformationModelGet)
    finally:
        assoc.release()
    return statuses


def _study_identifier(level: str, **keys: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for k, v in keys.items():
        setattr(ds, k, v)
    return ds


def test_stow_then_c_get_is_byte_for_byte_with_counts(gateway: Gateway) -> None:
    paths = [data_file(f) for f in FILES]
    for path in paths:
        stow(gateway, path)
    for path in paths:
        ds = dcmread(path, stop_before_pixels=True)
        received: list[bytes] = []
        statuses = _get(gateway, _study_identifier("STUDY", StudyInstanceUID=ds.StudyInstanceUID),
                        [(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)], received)
        assert received == [dataset_bytes(path)]
        final = statuses[-1]
        assert (final.Status, final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (0, 1, 0)
        assert [s.Status for s in statuses[:-1]] == [0xFF00]
        assert statuses[0].NumberOfRemainingSuboperations == 0


def test_c_get_without_an_accepted_syntax_counts_a_failure(gateway: Gateway) -> None:
    path = data_file("pydicom-data/JPEG-LL.dcm")
    stow(gateway, path)
    ds = dcmread(path, stop_before_pixels=True)
    received: list[bytes] = []
    statuses = _get(gateway, _study_identifier("STUDY", StudyInstanceUID=ds.StudyInstanceUID),
                    [(ds.SOPClassUID, "1.2.840.10008.1.2.1")], received)
    final = statuses[-1]
    assert received == []
    assert (final.Status, final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (0xA702, 0, 1)


def test_c_get_cancel_is_honoured(gateway: Gateway, tmp_path: Path) -> None:
    base = dcmread(data_file(FILES[0]))
    for n in range(6):  # six instances of one series
        base.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.7{n}"
        base.InstanceNumber = n + 1
        base.save_as(tmp_path / f"{n}.dcm", enforce_file_format=True)
        assert _store(gateway, tmp_path / f"{n}.dcm") == 0
    received: list[bytes] = []
    statuses = _get(gateway, _study_identifier("SERIES", StudyInstanceUID=base.StudyInstanceUID,
                                                  SeriesInstanceUID=base.SeriesInstanceUID),
                    [(base.SOPClassUID, "1.2.840.10008.1.2.1")], received, cancel_after=1)
    final = statuses[-1]
    assert final.Status == 0xFE00
    assert final.NumberOfCompletedSuboperations + final.NumberOfRemainingSuboperations == 6
    assert final.NumberOfRemainingSuboperations > 0
    assert len(received) == final.NumberOfCompletedSuboperations


def _find(gateway: Gateway, identifier: Dataset, model: str = StudyRootQueryRetrieveInformationModelFind,
          title: str = "PYSCU") -> list[tuple[int, Dataset | None]]:
    ae = _ae(title)
    ae.add_requested_context(model)
    assoc = ae.associate(*gateway.address, ae_title=SCP_AE)
    assert assoc.is_established
    try:
        return [(int(s.Status), i) for s, i in assoc.send_c_find(identifier, model)]
    finally:
        assoc.release()


def test_c_find_statuses(gateway: Gateway) -> None:
    assert _store(gateway, data_file(FILES[0])) == 0
    bad = _study_identifier("STUDY", StudyDate="2020*")
    assert [s for s, _ in _find(gateway, bad)] == [0xA900]  # no wildcard on DA: identifier does not match
    assert [s for s, _ in _find(gateway, _study_identifier("PATIENT", PatientID=""))] == [0xA900]  # Study Root
    assert [s for s, _ in _find(gateway, _study_identifier("STUDY", PatientID=""), title="NOBODY")] == [0xFF00, 0]
    found = _find(gateway, _study_identifier("PATIENT", PatientID="", PatientName="*"),
                  PatientRootQueryRetrieveInformationModelFind)
    assert [s for s, _ in found] == [0xFF00, 0]


def test_c_get_identifier_errors(gateway: Gateway) -> None:
    statuses = _get(gateway, _study_identifier("SERIES", StudyInstanceUID="1.2.3"), [], [])
    assert statuses[-1].Status == 0xA900
    assert _get(gateway, _study_identifier("STUDY", StudyInstanceUID="1.2.3"), [], [])[-1].Status == 0


# -- storage commitment -------------------------------------------------------------------------------------
def _commit(gateway: Gateway, refs: list[tuple[str, str]], title: str = "PYSCU",
            release_at_once: bool = False) -> tuple[int, list[Any]]:
    reports: list[Any] = []

    def on_report(event: Any) -> tuple[int, None]:
        reports.append((event.event_type, event.event_information))
        return 0x0000, None

    ae = _ae(title)
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate(*gateway.address, ae_title=SCP_AE, evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
    assert assoc.is_established
    info = Dataset()
    info.TransactionUID = "1.2.826.0.1.3680043.8.498.999"
    items = []
    for cls, uid in refs:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = cls, uid
        items.append(item)
    info.ReferencedSOPSequence = items
    status, _ = assoc.send_n_action(info, 1, StorageCommitmentPushModel, COMMITMENT_INSTANCE)
    if not release_at_once:
        deadline = time.monotonic() + 10
        while not reports and time.monotonic() < deadline:
            time.sleep(0.02)
    assoc.release()
    return int(status.Status), reports


def test_storage_commitment_on_the_same_association(gateway: Gateway) -> None:
    path = data_file(FILES[0])
    assert _store(gateway, path) == 0
    ds = dcmread(path, stop_before_pixels=True)
    status, reports = _commit(gateway, [(ds.SOPClassUID, ds.SOPInstanceUID), (ds.SOPClassUID, "1.2.3.4.5"),
                                        ("1.2.840.10008.5.1.4.1.1.4", ds.SOPInstanceUID)])
    assert status == 0
    assert len(reports) == 1
    event_type, info = reports[0]
    assert event_type == 2  # some failed
    assert [(i.ReferencedSOPInstanceUID,) for i in info.ReferencedSOPSequence] == [(ds.SOPInstanceUID,)]
    assert [(i.ReferencedSOPInstanceUID, i.FailureReason) for i in info.FailedSOPSequence] == [
        ("1.2.3.4.5", 0x0112), (ds.SOPInstanceUID, 0x0119)]
    assert info.TransactionUID == "1.2.826.0.1.3680043.8.498.999"


def test_storage_commitment_refuses_a_damaged_blob_and_reports_on_a_new_association(gateway: Gateway) -> None:
    path = data_file(FILES[0])
    assert _store(gateway, path) == 0
    gateway.settle()
    ds = dcmread(path, stop_before_pixels=True)
    stored = gateway.archive.retrieve.instances(ds.StudyInstanceUID)[0]
    blob = gateway.archive.settings.data_dir / "storage" / stored.storage_key
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit of pixel data: not what was stored
    blob.write_bytes(bytes(data))
    reports: list[Any] = []

    def on_report(event: Any) -> tuple[int, None]:
        reports.append((event.event_type, event.event_information))
        return 0x0000, None

    # The requester (COMMITSCU, a known peer) leaves at once; the report comes to its own SCP.
    scp = _ae("COMMITSCU")
    scp.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
    server = scp.start_server(("127.0.0.1", gateway.peer_ports["COMMITSCU"]), block=False,
                              evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
    try:
        status, same = _commit(gateway, [(ds.SOPClassUID, ds.SOPInstanceUID)], title="COMMITSCU",
                               release_at_once=True)
        deadline = time.monotonic() + 10
        while not reports and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        server.shutdown()
    assert status == 0
    assert len(reports) + len(same) == 1
    event_type, info = (reports or same)[0]
    assert event_type == 2
    assert [(i.ReferencedSOPInstanceUID, i.FailureReason) for i in info.FailedSOPSequence] == [
        (ds.SOPInstanceUID, 0x0110)]


# -- worklist and MPPS ----------------------------------------------------------------------------------------
ITEM = {
    "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
    "00100020": {"vr": "LO", "Value": ["MWL-1"]},
    "00080050": {"vr": "SH", "Value": ["ACC-77"]},
    "00401001": {"vr": "SH", "Value": ["RP-1"]},
    "00400100": {"vr": "SQ", "Value": [{
        "00080060": {"vr": "CS", "Value": ["CT"]},
        "00400001": {"vr": "AE", "Value": ["CT01"]},
        "00400002": {"vr": "DA", "Value": ["20240310"]},
        "00400003": {"vr": "TM", "Value": ["0930"]},
        "00400007": {"vr": "LO", "Value": ["CT chest"]},
        "00400009": {"vr": "SH", "Value": ["SPS-1"]},
    }]},
}


def _post_item(gateway: Gateway, item: dict[str, Any]) -> Any:
    return gateway.http.post("/worklist/items", json=item, headers={"Content-Type": "application/dicom+json"})


def test_worklist_rest_and_mwl_c_find(gateway: Gateway) -> None:
    created = _post_item(gateway, ITEM)
    assert created.status_code == 201, created.text
    stored = created.json()
    assert stored["00400100"]["Value"][0]["00400020"] == {"vr": "CS", "Value": ["SCHEDULED"]}
    study_uid = stored["0020000D"]["Value"][0]
    other = {**ITEM, "00100020": {"vr": "LO", "Value": ["MWL-2"]},
             "00400100": {"vr": "SQ", "Value": [{**ITEM["00400100"]["Value"][0],
                                                 "00080060": {"vr": "CS", "Value": ["MR"]},
                                                 "00400009": {"vr": "SH", "Value": ["SPS-2"]}}]}}
    assert _post_item(gateway, other).status_code == 201
    assert _post_item(gateway, ITEM).status_code == 409  # the step ID exists
    assert _post_item(gateway, {"00100020": {"vr": "LO", "Value": ["X"]}}).status_code == 400
    assert gateway.http.post("/worklist/items", content=b"{}", headers={"Content-Type": "text/plain"}
                             ).status_code == 415
    listed = gateway.http.get("/worklist/items", params={"Modality": "MR"}).json()
    assert [i["00100020"]["Value"] for i in listed] == [["MWL-2"]]
    assert gateway.http.get("/worklist/items", params={"Nonsense": "1"}).status_code == 400

    query = Dataset()
    query.PatientName = "doe*"
    query.PatientID = ""
    query.StudyInstanceUID = ""
    step = Dataset()
    step.Modality = "CT"
    step.ScheduledStationAETitle = ""
    step.ScheduledProcedureStepStartDate = "20240301-20240331"
    step.ScheduledProcedureStepID = ""
    query.ScheduledProcedureStepSequence = [step]
    answers = _find(gateway, query, ModalityWorklistInformationFind)
    assert [s for s, _ in answers] == [0xFF00, 0]
    answer = answers[0][1]
    assert answer is not None
    assert (answer.PatientID, answer.StudyInstanceUID) == ("MWL-1", study_uid)
    got = answer.ScheduledProcedureStepSequence[0]
    assert (got.Modality, got.ScheduledStationAETitle, got.ScheduledProcedureStepStartDate,
            got.ScheduledProcedureStepID) == ("CT", "CT01", "20240310", "SPS-1")
    assert "ScheduledProcedureStepDescription" not in got  # only the keys asked for
    step.ScheduledProcedureStepStartDate = "20240401-"
    assert [s for s, _ in _find(gateway, query, ModalityWorklistInformationFind)] == [0]


def _mpps(gateway: Gateway) -> Iterator[Any]:
    ae = _ae("CT01")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate(*gateway.address, ae_title=SCP_AE)
    assert assoc.is_established
    try:
        yield assoc
    finally:
        assoc.release()


def test_mpps_create_set_links_series_and_scheduled_step(gateway: Gateway) -> None:
    assert _post_item(gateway, ITEM).status_code == 201
    path = data_file(FILES[0])
    assert _store(gateway, path) == 0
    ct = dcmread(path, stop_before_pixels=True)
    uid = "1.2.826.0.1.3680043.8.498.4242"
    create = Dataset()
    create.PatientID = "MWL-1"
    create.PerformedProcedureStepStatus = "IN PROGRESS"
    sched = Dataset()
    sched.StudyInstanceUID = ct.StudyInstanceUID
    sched.ScheduledProcedureStepID = "SPS-1"
    create.ScheduledStepAttributesSequence = [sched]
    for assoc in _mpps(gateway):
        status, _ = assoc.send_n_create(create, ModalityPerformedProcedureStep, uid)
        assert status.Status == 0
        status, _ = assoc.send_n_create(create, ModalityPerformedProcedureStep, uid)
        assert status.Status == 0x0111
        wrong = Dataset()
        wrong.PerformedProcedureStepStatus = "COMPLETED"
        assert assoc.send_n_create(wrong, ModalityPerformedProcedureStep, "1.2.3.9")[0].Status == 0x0106
        assert gateway.http.get("/worklist/items", params={"ScheduledProcedureStepID": "SPS-1"}).json()[0][
            "00400100"]["Value"][0]["00400020"]["Value"] == ["STARTED"]
        done = Dataset()
        done.PerformedProcedureStepStatus = "COMPLETED"
        series = Dataset()
        series.SeriesInstanceUID = ct.SeriesInstanceUID
        series.ReferencedImageSequence = []
        done.PerformedSeriesSequence = [series]
        assert assoc.send_n_set(done, ModalityPerformedProcedureStep, uid)[0].Status == 0
        assert assoc.send_n_set(done, ModalityPerformedProcedureStep, uid)[0].Status == 0x0110
        assert assoc.send_n_set(done, ModalityPerformedProcedureStep, "1.2.3.8")[0].Status == 0x0112
    performed = gateway.http.get(f"/worklist/performed/{uid}").json()
    assert performed["status"] == "COMPLETED"
    assert performed["series"] == [{"SeriesInstanceUID": ct.SeriesInstanceUID, "storedInstances": 1}]
    assert gateway.http.get("/worklist/items", params={"ScheduledProcedureStepID": "SPS-1"}).json()[0][
        "00400100"]["Value"][0]["00400020"]["Value"] == ["COMPLETED"]
    assert gateway.http.get("/worklist/performed/1.2.3").status_code == 404


# -- access and robustness ------------------------------------------------------------------------------------
def test_unknown_callers_refused_when_configured(tmp_path: Path) -> None:
    for closed in open_gateway(tmp_path, f"sqlite:///{tmp_path / 'closed.sqlite'}", dimse_accept_unknown=False):
        ae = _ae("STRANGER")
        ae.add_requested_context(Verification)
        assoc = ae.associate(*closed.address, ae_title=SCP_AE)
        assert assoc.is_rejected
        ae = _ae("MOVESCU")
        ae.add_requested_context(Verification)
        assoc = ae.associate(*closed.address, ae_title=SCP_AE)
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        assoc.release()


def test_malformed_pdu_and_disconnect_mid_transfer_harm_nothing(gateway: Gateway) -> None:
    with socket.create_connection(gateway.address, timeout=5) as raw:
        raw.sendall(b"\x09\x00\x00\x00\x00\x04garbage-not-a-pdu")
        answer = raw.recv(100)
        assert answer == b"" or answer[0] == 0x07  # closed, or an A-ABORT first: that connection only ends
    # A C-STORE whose data set never finishes: the peer vanishes after half of it.
    path = data_file(FILES[0])
    ds = dcmread(path, stop_before_pixels=True)
    ae = _ae()
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    ae.maximum_pdu_size = 4096
    assoc = ae.associate(*gateway.address, ae_title=SCP_AE)
    assert assoc.is_established
    from pynetdicom.dimse_messages import C_STORE_RQ
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.pdu import P_DATA_TF

    req = C_STORE()
    req.MessageID, req.Priority = 1, 2
    req.AffectedSOPClassUID, req.AffectedSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    req.DataSet = __import__("io").BytesIO(dataset_bytes(path))
    message = C_STORE_RQ()
    message.primitive_to_message(req)
    context_id = assoc.accepted_contexts[0].context_id
    pdus = list(message.encode_msg(context_id, 4096))
    assert len(pdus) > 4
    sock = assoc.dul.socket.socket
    for primitive in pdus[: len(pdus) // 2]:
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        sock.sendall(pdu.encode())
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    time.sleep(0.5)
    assert gateway.archive.retrieve.instances(ds.StudyInstanceUID) == []
    staging = gateway.archive.staging_dir
    assert [p for p in staging.rglob("*") if p.is_file()] == []  # no spool file, nothing in the inbox
    assert _store(gateway, path) == 0  # the gateway still serves


def test_many_associations_at_once(gateway: Gateway, tmp_path: Path) -> None:
    base = dcmread(data_file(FILES[0]))
    paths = []
    for n in range(16):
        base.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.8{n}"
        base.save_as(tmp_path / f"{n}.dcm", enforce_file_format=True)
        paths.append(tmp_path / f"{n}.dcm")
    results: list[int] = []
    threads = [threading.Thread(target=lambda p=p: results.append(_store(gateway, p))) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [0] * 16
    gateway.settle()
    assert len(gateway.archive.retrieve.instances(base.StudyInstanceUID)) == 16


@pytest.fixture(autouse=True)
def _storage_contexts_available() -> None:
    assert len(StoragePresentationContexts) > 0
