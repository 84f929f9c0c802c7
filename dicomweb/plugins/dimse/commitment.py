"""Storage Commitment Push Model SCP (PS3.4 J): N-ACTION asks, N-EVENT-REPORT answers.

An instance is committed only when the index names it with the same SOP Class and its stored bytes hash
to the sha256 recorded at ingest (read back from whichever tier or container holds it). The report goes
on the requesting association while it is open, else on a new association to the peer's configured
address, with SCP/SCU role selection making the archive the SCP of the event report.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.presentation import build_context, build_role
from sqlalchemy import select

from ...archive import Archive
from ...index.models import Instance, Series, Study
from ...services.retrieve import StoredInstance
from .access import NOT_AUTHORIZED, AccessRules
from .sop import STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE
from .status import (
    CLASS_INSTANCE_CONFLICT,
    MISSING_ATTRIBUTE,
    NO_SUCH_ACTION,
    NO_SUCH_OBJECT,
    PROCESSING_FAILURE,
    SUCCESS,
    status,
)

log = logging.getLogger(__name__)
ALL_COMMITTED, SOME_FAILED = 1, 2


@dataclass(frozen=True)
class Verdict:
    sop_class_uid: str
    sop_instance_uid: str
    failure: int | None  # None: committed


def verify(archive: Archive, requested: list[tuple[str, str]]) -> list[Verdict]:
    """Whether each (SOP Class, SOP Instance) is durably stored and its bytes still match the index."""
    studies, series_t, instances = (Study.__table__, Series.__table__,  # type: ignore[attr-defined]
                                    Instance.__table__)  # type: ignore[attr-defined]
    uids = sorted({sop for _, sop in requested})
    with archive.engine.connect() as conn:
        rows = conn.execute(
            select(instances.c.sop_instance_uid, instances.c.sop_class_uid, studies.c.study_instance_uid)
            .select_from(instances.join(series_t, instances.c.series_fk == series_t.c.id)
                         .join(studies, series_t.c.study_fk == studies.c.id))
            .where(instances.c.sop_instance_uid.in_(uids))
        ).all()
    found = {r.sop_instance_uid: (r.sop_class_uid, r.study_instance_uid) for r in rows}
    stored: dict[str, StoredInstance] = {}
    for study in sorted({s for _, s in found.values()}):
        stored.update({i.sop_instance_uid: i for i in archive.retrieve.instances(study) if i.sop_instance_uid in found})
    verdicts = []
    for sop_class, sop in requested:
        failure: int | None = None
        if sop not in found or sop not in stored:
            failure = NO_SUCH_OBJECT
        elif found[sop][0] != sop_class:
            failure = CLASS_INSTANCE_CONFLICT
        elif not _intact(archive, stored[sop]):
            failure = PROCESSING_FAILURE
        verdicts.append(Verdict(sop_class, sop, failure))
    return verdicts


def _intact(archive: Archive, instance: StoredInstance) -> bool:
    digest = hashlib.sha256()
    try:
        for chunk in archive.retrieve.iter_bytes(instance):
            digest.update(chunk)
    except OSError as exc:
        log.error("commitment: cannot read %s: %s", instance.sop_instance_uid, exc)
        return False
    return digest.hexdigest() == instance.sha256


def event_information(transaction_uid: str, verdicts: list[Verdict], ae_title: str) -> tuple[int, Dataset]:
    info = Dataset()
    info.TransactionUID = transaction_uid
    info.RetrieveAETitle = ae_title
    good, bad = [], []
    for v in verdicts:
        item = Dataset()
        item.ReferencedSOPClassUID = v.sop_class_uid
        item.ReferencedSOPInstanceUID = v.sop_instance_uid
        if v.failure is None:
            good.append(item)
        else:
            item.FailureReason = v.failure
            bad.append(item)
    if good:
        info.ReferencedSOPSequence = Sequence(good)
    if bad:
        info.FailedSOPSequence = Sequence(bad)
    return (SOME_FAILED if bad else ALL_COMMITTED), info


class Commitment:
    """Answers N-ACTION at once; verifies and reports in a thread of its own."""

    def __init__(self, archive: Archive, rules: AccessRules, ae_title: str,
                 associate: Callable[..., Association], settle: Callable[[], bool] | None = None) -> None:
        """``settle``: waits until instances already acknowledged are indexed (the gateway's inbox)."""
        self.settle = settle
        self.archive = archive
        self.rules = rules
        self.ae_title = ae_title
        self.associate = associate

    def handle_action(self, event: Event) -> tuple[int | Dataset, Dataset | None]:
        caller = event.assoc.requestor.ae_title
        if event.action_type != 1:
            return status(NO_SUCH_ACTION, "only Request Storage Commitment (action type 1) exists"), None
        if not self.rules.allows(caller, "store"):
            return status(NOT_AUTHORIZED, f"{caller} may not ask for storage commitment"), None
        info = event.action_information
        refs = info.get("ReferencedSOPSequence") or []
        requested = [(str(i.get("ReferencedSOPClassUID", "")), str(i.get("ReferencedSOPInstanceUID", "")))
                     for i in refs]
        if not info.get("TransactionUID") or not requested or any(not c or not s for c, s in requested):
            return status(MISSING_ATTRIBUTE, "TransactionUID and ReferencedSOPSequence items are required"), None
        threading.Thread(target=self.report, args=(event.assoc, caller, str(info.TransactionUID), requested),
                         name="dimse-commitment", daemon=True).start()
        return SUCCESS, None

    def report(self, assoc: Association, caller: str, transaction_uid: str,
               requested: list[tuple[str, str]]) -> bool:
        if self.settle is not None and not self.settle():
            log.warning("commitment %s: received instances are still being indexed; verifying anyway",
                        transaction_uid)
        try:
            event_type, info = event_information(transaction_uid, verify(self.archive, requested), self.ae_title)
        except Exception:
            log.exception("commitment %s: verification failed", transaction_uid)
            event_type, info = event_information(
                transaction_uid, [Verdict(c, s, PROCESSING_FAILURE) for c, s in requested], self.ae_title)
        if assoc.is_established and self._send(assoc, event_type, info):
            return True
        peer = self.rules.destination(caller)
        if peer is None:
            log.warning("commitment %s: %s left and is not a known peer; the report is lost",
                        transaction_uid, caller)
            return False
        reply = self.associate(peer.host, peer.port, ae_title=peer.ae_title,
                               contexts=[build_context(STORAGE_COMMITMENT)],
                               ext_neg=[build_role(STORAGE_COMMITMENT, scp_role=True)])
        try:
            return reply.is_established and self._send(reply, event_type, info)
        finally:
            if reply.is_established:
                reply.release()

    def _send(self, assoc: Association, event_type: int, info: Dataset) -> bool:
        try:
            answer: Any = assoc.send_n_event_report(info, event_type, STORAGE_COMMITMENT,
                                                    STORAGE_COMMITMENT_INSTANCE)
        except (ValueError, RuntimeError) as exc:
            log.info("commitment report not sent on this association: %s", exc)
            return False
        result = answer[0] if isinstance(answer, tuple) else answer
        return bool(result) and result.get("Status") == SUCCESS
