"""DIMSE callers act as the local user their AE title maps to: C-FIND and C-GET see what that user may see,
C-STORE stores only into the user's institutions; a peer with no principal stores but finds nothing."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelFind

from dicomweb.archive import Archive
from dicomweb.audit import verify
from dicomweb.audit.query import AuditFilter, search
from dicomweb.plugins.dimse import DimseGateway
from dicomweb.policies.identity.users import add_user
from dicomweb.settings import load_settings
from tests.policies.fixture_archive import BY_KEY, CC, GH, all_instances

SCP = "DICOMWEB"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Archive, int, DimseGateway]]:
    root = tmp_path_factory.mktemp("dimse-policy")
    peers = [{"ae_title": "RADWS", "principal": "radiologist"}, {"ae_title": "CT_SCANNER"}]
    settings = load_settings(data_dir=root / "data", auth="on", dimse_port=0, dimse_peers=peers,
                             dimse_accept_unknown=False, fsync=False, dimse_timeout_seconds=10)
    archive = Archive.open(settings, ingest_processes=0)
    add_user(archive.engine, "radiologist", roles=["radiologist"], password=None, institution=GH)
    for index, (_, _, _, data) in enumerate(all_instances()):
        path = root / f"{index}.dcm"
        path.write_bytes(data)
        assert archive.ingest.store(archive.stage_file(path)).ok
    gateway = DimseGateway(archive)
    port = gateway.start()
    yield archive, port, gateway
    gateway.stop()
    archive.close()


def _studies(port: int, caller: str) -> set[str]:
    ae = AE(ae_title=caller)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", port, ae_title=SCP)
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    try:
        answers = [i for s, i in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)
                   if s.Status in (0xFF00, 0xFF01)]
    finally:
        assoc.release()
    return {str(a.StudyInstanceUID) for a in answers}


def test_find_sees_what_the_mapped_user_may_see(gateway: tuple[Archive, int, DimseGateway]) -> None:
    _, port, _ = gateway
    assert _studies(port, "RADWS") == {BY_KEY[k].uid for k in ("S1", "S3", "S4")}  # the institution's
    assert _studies(port, "CT_SCANNER") == set()


def _store(port: int, caller: str, institution: str, number: int) -> int:
    ds = pydicom.dcmread(io.BytesIO(all_instances()[0][3]))
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.10.1137.6.{number}"
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.10.1137.5.{number}"
    ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.10.1137.4.{number}"
    ds.InstitutionName = institution
    ae = AE(ae_title=caller)
    ae.add_requested_context(CTImageStorage, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=SCP)
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(ds).Status)
    finally:
        assoc.release()


def test_store_is_limited_to_the_mapped_users_institutions(gateway: tuple[Archive, int, DimseGateway]) -> None:
    _, port, _ = gateway
    assert _store(port, "RADWS", GH, 1) == 0x0000
    assert _store(port, "RADWS", CC, 2) == 0x0124
    assert _store(port, "CT_SCANNER", CC, 3) == 0x0000  # a modality: the peer table decides


def test_unknown_callers_are_refused(gateway: tuple[Archive, int, DimseGateway]) -> None:
    _, port, _ = gateway
    ae = AE(ae_title="STRANGER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", port, ae_title=SCP)
    assert not assoc.is_established




def test_dimse_requests_are_audited(gateway: tuple[Archive, int, DimseGateway]) -> None:
    archive, port, server = gateway
    _studies(port, "RADWS")
    _store(port, "RADWS", CC, 9)
    assert server.audit_log is not None and server.audit_log.flush()
    records = search(archive.engine, AuditFilter(user="radiologist"), 100, 0)
    kinds = {(r["action"], r["method"], r["outcome"], r["client_ip"]) for r in records}
    assert ("query", "C-FIND", "success", "127.0.0.1") in kinds
    assert ("store", "C-STORE", "denied", "127.0.0.1") in kinds
    assert verify(archive.engine).ok
