"""Storage SCP (C-STORE): the received data set, as the peer encoded it, goes through the shared ingest.

pynetdicom calls the handler only once the whole data set has arrived, so a peer that disconnects
mid-transfer leaves nothing behind: the partial P-DATA never reaches the archive.
"""

from __future__ import annotations

import logging
from typing import cast

from pydicom.dataset import Dataset
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event

from ...archive import Archive
from ...dicom.file_meta import file_meta_bytes
from ...services.staging import BlobSpooler
from .access import NOT_AUTHORIZED, AccessRules
from .audit import DimseAudit
from .receipt import Receipt
from .status import OUT_OF_RESOURCES, PROCESSING_FAILURE, SUCCESS, status

log = logging.getLogger(__name__)


def part10_head(event: Event) -> bytes:
    """Preamble and file meta for the received data set (what pynetdicom's ``event.file_meta`` holds)."""
    request = cast(C_STORE, event.request)
    return file_meta_bytes(str(request.AffectedSOPClassUID), str(request.AffectedSOPInstanceUID),
                           str(event.context.transfer_syntax), PYNETDICOM_IMPLEMENTATION_UID,
                           PYNETDICOM_IMPLEMENTATION_VERSION)


def handle_store(event: Event, archive: Archive, rules: AccessRules, audit: DimseAudit | None = None,
                 receipt: Receipt | None = None) -> int | Dataset:
    """With a ``receipt`` the instance is acknowledged once checked and durable in the inbox; without,
    once fully ingested."""
    caller = event.assoc.requestor.ae_title
    if not rules.allows(caller, "store"):
        if audit is not None:
            audit.record(event, "store", "C-STORE", NOT_AUTHORIZED)
        return status(NOT_AUTHORIZED, f"{caller} may not store here")
    institutions = rules.policy.store_institutions(caller) if rules.policy is not None else None
    # The bytes exactly as the peer sent them, behind the preamble and file meta made for them.
    parts = (part10_head(event), event.encoded_dataset(include_meta=False))
    if receipt is not None:
        try:
            blob = receipt.inbox.arrive(parts)
        except OSError as exc:
            log.error("C-STORE from %s: cannot write the inbox: %s", caller, exc)
            if audit is not None:
                audit.record(event, "store", "C-STORE", OUT_OF_RESOURCES, detail=str(exc))
            return status(OUT_OF_RESOURCES, "the archive cannot write the instance now")
        result = receipt.receive(blob, institutions)
    else:
        spool = BlobSpooler(archive.staging_dir, archive.spool_memory_bytes)
        try:
            for part in parts:
                spool.write(part)
        except BaseException:
            spool.abort()
            raise
        result = archive.ingest.store(spool.finish(), None, institutions)
    if audit is not None:
        audit.record(event, "store", "C-STORE", SUCCESS if result.ok else (result.failure_reason or PROCESSING_FAILURE),
                     study=result.study_instance_uid or "", detail=result.message or "", count=int(result.ok))
    if result.ok:
        log.debug("C-STORE %s from %s: %s", result.sop_instance_uid, caller, result.outcome)
        return SUCCESS
    log.info("C-STORE from %s failed: %s", caller, result.message)
    return status(result.failure_reason or PROCESSING_FAILURE, result.message)
