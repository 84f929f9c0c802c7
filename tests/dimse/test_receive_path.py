"""The gateway's own receive path: directly encoded C-STORE responses, cheap context copies, event-driven
associations (release, abort, a conflicting version while the first is still being indexed)."""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import UID
from pynetdicom import AE
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicomweb.plugins.dimse.reactor import EventDrivenDUL, SharedUIDContext
from dicomweb.plugins.dimse.response import encode_store_response

from .conftest import FILES, Gateway, data_file, dataset_bytes
from .wado import wado_instance

SCP_AE = "DICOMWEB"


def _pynetdicom_command(primitive: C_STORE) -> bytes:
    message = C_STORE_RSP()
    message.primitive_to_message(primitive)
    (pdata,) = list(message.encode_msg(1, 0))
    ((_, fragment),) = pdata.presentation_data_value_list
    assert fragment[:1] == b"\x03"
    return fragment[1:]


@pytest.mark.parametrize(("sop_class", "sop_instance", "status", "message_id"), [
    ("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", 0x0000, 1),  # even-length UIDs
    ("1.2.840.10008.5.1.4.1.1.4", "1.2.3.45", 0xB000, 65535),  # odd: NUL-padded
    (None, "1.2.826.0.1.3680043.8.498.1", 0x0000, 7),  # no SOP Class UID in the response
])
def test_store_response_bytes_are_pynetdicoms(sop_class: str | None, sop_instance: str, status: int,
                                               message_id: int) -> None:
    primitive = C_STORE()
    primitive.MessageIDBeingRespondedTo = message_id
    primitive.Status = status
    primitive.AffectedSOPInstanceUID = sop_instance
    if sop_class is not None:
        primitive.AffectedSOPClassUID = sop_class
    assert encode_store_response(primitive) == _pynetdicom_command(primitive)


def test_store_response_with_an_error_comment_is_left_to_pynetdicom() -> None:
    primitive = C_STORE()
    primitive.MessageIDBeingRespondedTo = 1
    primitive.Status = 0x0111
    primitive.ErrorComment = "already stored"  # type: ignore[assignment]
    assert encode_store_response(primitive) is None
    request = C_STORE()
    request.MessageID = 1
    request.Priority = 2
    assert encode_store_response(request) is None  # a request, not a response


def test_shared_uid_context_copies_are_independent() -> None:
    context = SharedUIDContext.of(build_context("1.2.840.10008.5.1.4.1.1.2", ["1.2.840.10008.1.2",
                                                                          "1.2.840.10008.1.2.1"]))
    clone = copy.deepcopy(context)
    assert isinstance(clone, SharedUIDContext)
    assert (clone.abstract_syntax, clone.transfer_syntax) == (context.abstract_syntax, context.transfer_syntax)
    clone.transfer_syntax.append(UID("1.2.840.10008.1.2.2"))
    clone.context_id = 3
    assert context.transfer_syntax == ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"]
    assert context.context_id is None


def _ae(title: str = "PYSCU") -> AE:
    ae = AE(ae_title=title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    return ae


def _server_associations(gateway: Gateway) -> list[object]:
    server = gateway.dimse.server
    assert server is not None
    return list(server.active_associations)


def _wait_until_gone(gateway: Gateway) -> None:
    deadline = time.monotonic() + 5
    while _server_associations(gateway) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _server_associations(gateway) == []


def test_accepted_associations_are_event_driven_and_end_on_release_and_abort(gateway: Gateway) -> None:
    for ending in ("release", "abort"):
        ae = _ae()
        ae.add_requested_context(Verification)
        assoc = ae.associate(*gateway.address, ae_title=SCP_AE)
        assert assoc.is_established
        (accepted,) = _server_associations(gateway)
        assert isinstance(accepted.dul, EventDrivenDUL)  # type: ignore[attr-defined]
        for _ in range(3):
            assert assoc.send_c_echo().Status == 0x0000
        assoc.release() if ending == "release" else assoc.abort()
        _wait_until_gone(gateway)  # the gateway's threads for it have ended


def store_one(gateway: Gateway, caller: str, path: Path) -> Any:
    """The gateway's answer to one C-STORE of ``path`` from ``caller``, on an association of its own."""
    ds = dcmread(path, stop_before_pixels=True)
    ae = _ae(caller)
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate(*gateway.address, ae_title=SCP_AE)
    assert assoc.is_established
    try:
        return assoc.send_c_store(path)
    finally:
        assoc.release()


def test_a_failure_response_keeps_its_error_comment(gateway: Gateway) -> None:
    response = store_one(gateway, "READONLY", data_file(FILES[1]))  # a peer that may not store
    assert response.Status == 0x0124
    assert "READONLY" in response.ErrorComment


def test_a_second_version_while_the_first_is_being_indexed_is_a_conflict(
        gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = dcmread(data_file(FILES[0]))
    first.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.77"
    second = copy.deepcopy(first)
    second.PatientName = "Other^Version"
    paths = [tmp_path / "first.dcm", tmp_path / "second.dcm"]
    first.save_as(paths[0], enforce_file_format=True)
    second.save_as(paths[1], enforce_file_format=True)
    # Indexing waits until a timer lets it go: the second version arrives while the first is in the inbox.
    inbox = gateway.dimse.inbox
    assert inbox is not None
    indexing = inbox._ingest
    release = threading.Event()

    class HeldIngest:
        def store(self, *args: Any, **kwargs: Any) -> Any:
            release.wait(10)
            return indexing.store(*args, **kwargs)

    monkeypatch.setattr(inbox, "_ingest", HeldIngest())
    ae = _ae()
    ae.add_requested_context(first.SOPClassUID, first.file_meta.TransferSyntaxUID)
    assoc = ae.associate(*gateway.address, ae_title=SCP_AE)
    assert assoc.is_established
    try:
        assert int(assoc.send_c_store(paths[0]).Status) == 0x0000
        assert inbox.pending == 1  # acknowledged, not indexed
        threading.Timer(0.3, release.set).start()
        assert int(assoc.send_c_store(paths[1]).Status) == 0x0111  # checked against the first, once indexed
    finally:
        release.set()
        assoc.release()
    gateway.settle()
    assert len(gateway.archive.retrieve.instances(first.StudyInstanceUID)) == 1
    (tmp_path / "wado.dcm").write_bytes(wado_instance(gateway, first))
    assert dataset_bytes(tmp_path / "wado.dcm") == dataset_bytes(paths[0])  # the first version, kept
