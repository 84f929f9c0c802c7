"""Third-party peers: DCMTK's echoscu, storescu, findscu, getscu and movescu (with storescp) against the gateway."""

from __future__ import annotations

import hashlib
import io
import subprocess
import time
from pathlib import Path

from pydicom import dcmread

from .conftest import AE, FILES, Gateway, data_file, dcmtk, elements, run_tool
from .wado import stow, wado_instance

# storescu proposes uncompressed syntaxes unless told: the option that proposes each file's own encoding.
PROPOSE = {"1.2.840.10008.1.2.4.70": "-xs", "1.2.840.10008.1.2.5": "-xr"}


def _store_all(gateway: Gateway) -> list[Path]:
    files = [data_file(f) for f in FILES]
    for path in files:
        option = PROPOSE.get(dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID, "-x=")
        result = run_tool("storescu", option, "-aet", "STORESCU", "-aec", AE, *gateway.address, path)
        assert result.returncode == 0, result.stderr
    return files


def test_echoscu(gateway: Gateway) -> None:
    result = run_tool("echoscu", "-aet", "ECHOSCU", "-aec", AE, *gateway.address)
    assert result.returncode == 0, result.stderr


def test_storescu_is_indexed_and_retrievable_by_wado(gateway: Gateway) -> None:
    files = _store_all(gateway)
    gateway.settle()
    for path in files:
        original = dcmread(path)
        stored = gateway.archive.retrieve.instances(original.StudyInstanceUID, original.SeriesInstanceUID,
                                                    original.SOPInstanceUID)
        assert len(stored) == 1
        assert stored[0].transfer_syntax_uid == original.file_meta.TransferSyntaxUID
        body = wado_instance(gateway, original)
        # WADO-RS gives the stored file exactly; its data set is the one the peer sent, element for element.
        assert hashlib.sha256(body).hexdigest() == stored[0].sha256
        assert elements(dcmread(io.BytesIO(body))) == elements(original)


def _findscu(gateway: Gateway, tmp: Path, *keys: str, model: str = "-S") -> list:
    out = tmp / f"find-{time.monotonic_ns()}"
    out.mkdir()
    args = [a for k in keys for a in ("-k", k)]
    result = run_tool("findscu", model, "-aet", "FINDSCU", "-aec", AE, "-X", "-od", out, *args, *gateway.address)
    assert result.returncode == 0, result.stderr
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def test_findscu_study_series_image_and_patient_levels(gateway: Gateway, tmp_path: Path) -> None:
    _store_all(gateway)
    ct = dcmread(data_file(FILES[0]))
    answers = _findscu(gateway, tmp_path, "QueryRetrieveLevel=STUDY", f"PatientID={ct.PatientID}",
                       "StudyInstanceUID", "PatientName", "ModalitiesInStudy", "NumberOfStudyRelatedInstances",
                       "StudyDescription")
    assert len(answers) == 1
    a = answers[0]
    assert a.StudyInstanceUID == ct.StudyInstanceUID
    assert str(a.PatientName) == str(ct.PatientName)
    assert a.ModalitiesInStudy == "CT"
    assert a.NumberOfStudyRelatedInstances == 1
    assert a.QueryRetrieveLevel == "STUDY"
    assert "StudyDescription" in a and "SeriesInstanceUID" not in a  # only the keys asked for
    # Wildcards, as QIDO-RS matches them (one shared query model).
    all_studies = _findscu(gateway, tmp_path, "QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientName=*")
    assert len({a.StudyInstanceUID for a in all_studies}) == len({dcmread(data_file(f)).StudyInstanceUID
                                                                   for f in FILES})
    series = _findscu(gateway, tmp_path, "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={ct.StudyInstanceUID}",
                      "SeriesInstanceUID", "Modality", "NumberOfSeriesRelatedInstances")
    assert [(s.SeriesInstanceUID, s.Modality, s.NumberOfSeriesRelatedInstances) for s in series] == [
        (ct.SeriesInstanceUID, "CT", 1)]
    images = _findscu(gateway, tmp_path, "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={ct.StudyInstanceUID}",
                      f"SeriesInstanceUID={ct.SeriesInstanceUID}", "SOPInstanceUID", "SOPClassUID",
                      "InstanceNumber", "Rows")
    assert [(i.SOPInstanceUID, i.SOPClassUID, i.InstanceNumber, i.Rows) for i in images] == [
        (ct.SOPInstanceUID, ct.SOPClassUID, ct.InstanceNumber, ct.Rows)]
    patients = _findscu(gateway, tmp_path, "QueryRetrieveLevel=PATIENT", f"PatientID={ct.PatientID}",
                        "PatientName", "NumberOfPatientRelatedStudies", model="-P")
    assert [(p.PatientID, str(p.PatientName), p.NumberOfPatientRelatedStudies) for p in patients] == [
        (ct.PatientID, str(ct.PatientName), 1)]


def test_stow_then_getscu_gives_the_stored_instances(gateway: Gateway, tmp_path: Path) -> None:
    files = [data_file(f) for f in FILES]
    for path in files:
        stow(gateway, path)
    out = tmp_path / "get"
    out.mkdir()
    for path in files:
        ds = dcmread(path)
        prefer = "+" + PROPOSE.get(ds.file_meta.TransferSyntaxUID, "-x=")[1:]
        result = run_tool("getscu", "-S", prefer, "-aet", "GETSCU", "-aec", AE, "-k", "QueryRetrieveLevel=SERIES",
                          "-k", f"StudyInstanceUID={ds.StudyInstanceUID}", "-k",
                          f"SeriesInstanceUID={ds.SeriesInstanceUID}", "-od", out, *gateway.address)
        assert result.returncode == 0, result.stderr
    received = {dcmread(p).SOPInstanceUID: p for p in out.iterdir()}
    assert len(received) == len(files)
    for path in files:
        got = received[dcmread(path).SOPInstanceUID]
        assert dcmread(got).file_meta.TransferSyntaxUID == dcmread(path).file_meta.TransferSyntaxUID
        assert elements(dcmread(got)) == elements(dcmread(path))


def test_movescu_to_storescp_and_unknown_destination(gateway: Gateway, tmp_path: Path) -> None:
    _store_all(gateway)
    out = tmp_path / "move"
    out.mkdir()
    storescp = subprocess.Popen([dcmtk("storescp"), "+xa", "-aet", "STORESCP", "-od", str(out),
                                 str(gateway.peer_ports["STORESCP"])], env={"TCP_NODELAY": "1"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        files = [data_file(f) for f in FILES]
        for path in files:
            ds = dcmread(path)
            result = run_tool("movescu", "-S", "-aet", "MOVESCU", "-aec", AE, "-aem", "STORESCP",
                              "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={ds.StudyInstanceUID}",
                              *gateway.address)
            assert result.returncode == 0, result.stderr
        received = {dcmread(p).SOPInstanceUID: p for p in out.iterdir()}
        assert len(received) == len(files)
        for path in files:
            assert elements(dcmread(received[dcmread(path).SOPInstanceUID])) == elements(dcmread(path))
        refused = run_tool("movescu", "-S", "-aet", "MOVESCU", "-aec", AE, "-aem", "NOWHERE",
                           "-k", "QueryRetrieveLevel=STUDY",
                           "-k", f"StudyInstanceUID={dcmread(files[0]).StudyInstanceUID}",
                           *gateway.address)
        assert "MoveDestinationUnknown" in refused.stdout + refused.stderr
    finally:
        storescp.terminate()
        storescp.wait(timeout=10)
