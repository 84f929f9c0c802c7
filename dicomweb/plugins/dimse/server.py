"""The gateway: one pynetdicom AE, its accepted services and their handlers over the archive's services."""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import replace
from functools import partial
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import ThreadedAssociationServer

from ...archive import Archive
from ...audit import AuditLog
from ...policies.engine import PolicyEngine
from ...policies.identity.issuer import principal_for_user
from ...services.inbox import Inbox
from ...services.ingest import IngestService
from .access import AccessRules
from .audit import DimseAudit
from .commitment import Commitment
from .find import handle_find
from .mpps import PerformedSteps
from .policy import DimsePolicy
from .reactor import AcceptingRequestHandler, SharedUIDContext
from .receipt import Receipt
from .retrieve import handle_get, handle_move, install_sender
from .sop import SERVICES, WORKLIST_FIND
from .storage import handle_store
from .worklist import handle_worklist_find

log = logging.getLogger(__name__)

# Retrieve sends stored files from disk without decoding them (see retrieve.py).
_config.STORE_SEND_CHUNKED_DATASET = True


def _on_open(event: Event) -> None:
    """Every connection, accepted or opened: no Nagle delay (each C-STORE would wait ~40 ms for an ACK),
    and sends that take stored files as they are."""
    sock = getattr(event.assoc.dul.socket, "socket", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
    install_sender(event.assoc)


# Which transfer syntax to accept when a peer offers several for one SOP class (pynetdicom takes the first of
# ours the peer proposed): lossless compressed first (the peer's own encoding, no conversion), then native,
# lossy last, so a peer never compresses lossily for us what it could send losslessly.
LOSSLESS = ["1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90",
            "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1.99"]
NATIVE = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2"]
STORAGE_SYNTAXES = LOSSLESS + NATIVE + [ts for ts in ALL_TRANSFER_SYNTAXES if ts not in LOSSLESS + NATIVE]


def _request(event: Event) -> Any:
    return event.request


class DimseGateway:
    def __init__(self, archive: Archive) -> None:
        settings = archive.settings
        self.archive = archive
        self.settings = settings
        self.rules = AccessRules.from_settings(settings)
        if settings.auth == "on":
            self.rules = replace(self.rules, policy=DimsePolicy(
                PolicyEngine.open(archive.engine, settings.policy_file),
                {p.ae_title: p.principal for p in settings.dimse_peers if p.principal},
                partial(principal_for_user, archive.engine, settings),
            ))
        self.server: ThreadedAssociationServer | None = None
        if not log.isEnabledFor(logging.DEBUG):
            logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # it logs every association at INFO
            # Nor bind its logging handlers to every PDU and DIMSE message: they decode each C-STORE request
            # again only to log it, a debug-level record the level above drops anyway.
            _config.LOG_HANDLER_LEVEL = "none"
        ae = AE(ae_title=settings.dimse_ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = settings.dimse_timeout_seconds
        ae.connection_timeout = settings.dimse_timeout_seconds
        ae.maximum_associations = settings.dimse_max_associations
        ae.maximum_pdu_size = 0  # no limit: peers send data sets in as few PDUs as they like
        if not settings.dimse_accept_unknown:
            ae.require_calling_aet = [p.ae_title for p in settings.dimse_peers]
        for cx in AllStoragePresentationContexts:
            # scp_role: C-GET peers ask the archive to act as Storage SCU towards them on this association.
            ae.add_supported_context(str(cx.abstract_syntax), STORAGE_SYNTAXES, scu_role=True, scp_role=True)
        for uid in SERVICES:
            ae.add_supported_context(uid, [*NATIVE, "1.2.840.10008.1.2.1.99"])
        self.ae = ae
        self.audit_log = AuditLog.open(archive.engine, settings) if settings.audit_enabled else None
        self.audit = DimseAudit(self.audit_log, self.rules)
        self.inbox: Inbox | None = None
        self.receipt: Receipt | None = None
        if settings.dimse_store_ack == "received":
            self.inbox = Inbox(archive.staging_dir / "inbox", archive.ingest, archive.staging_dir,
                               workers=2 * max(1, archive.ingest_parallelism), fsync=settings.fsync)
            self.receipt = Receipt(self.inbox, IngestService(archive.engine, archive.tiers, settings),
                                   settings.dimse_timeout_seconds)
        self.commitment = Commitment(archive, self.rules, settings.dimse_ae_title, self._associate,
                                     settle=self.inbox.settle if self.inbox is not None else None)
        self.performed = PerformedSteps(archive.engine, self.rules)

    def _associate(self, host: str, port: int, **kwargs: Any) -> Association:
        return self.ae.associate(host, port, evt_handlers=self.outgoing_handlers, **kwargs)

    @property
    def outgoing_handlers(self) -> list[Any]:
        return [(evt.EVT_CONN_OPEN, _on_open)]

    def _find(self, event: Event) -> Any:
        if _request(event).AffectedSOPClassUID == WORKLIST_FIND:
            return handle_worklist_find(event, self.archive.engine, self.rules)
        return handle_find(event, self.archive, self.rules, self.settings.dimse_ae_title)

    def handlers(self) -> list[Any]:
        return [
            (evt.EVT_CONN_OPEN, _on_open),
            (evt.EVT_C_STORE, partial(handle_store, archive=self.archive, rules=self.rules, audit=self.audit,
                                      receipt=self.receipt)),
            (evt.EVT_C_FIND, self.audit.wrap(self._find, "query", "C-FIND")),
            (evt.EVT_C_GET, self.audit.wrap(partial(handle_get, archive=self.archive, rules=self.rules),
                                            "retrieve", "C-GET")),
            (evt.EVT_C_MOVE, self.audit.wrap(partial(handle_move, archive=self.archive, rules=self.rules,
                                                     handlers=self.outgoing_handlers), "retrieve", "C-MOVE")),
            (evt.EVT_N_ACTION, self.commitment.handle_action),
            (evt.EVT_N_CREATE, self.performed.handle_create),
            (evt.EVT_N_SET, self.performed.handle_set),
        ]

    def start(self) -> int:
        """Listen in background threads; returns the port (useful when dimse_port is 0)."""
        port = self.settings.dimse_port or 0
        if self.inbox is not None:
            self.inbox.start()  # what a crash left received but not yet indexed
        # ae.start_server, but with the request handler whose associations run event-driven loops.
        contexts: list[PresentationContext] = [SharedUIDContext.of(cx) for cx in self.ae.supported_contexts]
        server = self.ae.make_server((self.settings.dimse_host, port), contexts=contexts, evt_handlers=self.handlers(),
                                     server_class=ThreadedAssociationServer, request_handler=AcceptingRequestHandler)
        threading.Thread(target=server.serve_forever, name="dimse-server", daemon=True).start()
        self.ae._servers.append(server)  # as start_server does: server.shutdown() takes it out again
        self.server = server
        bound = int(server.server_address[1])
        log.info("DIMSE gateway %s listening on %s:%d", self.settings.dimse_ae_title, self.settings.dimse_host, bound)
        return bound

    def settle(self, timeout: float = 60.0) -> bool:
        """Wait until every instance acknowledged so far is indexed (C-STORE answers on durable receipt);
        False when ``timeout`` passed first."""
        return self.inbox.settle(timeout) if self.inbox is not None else True

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
        self.ae.shutdown()
        if self.inbox is not None:
            self.inbox.close()
        if self.audit_log is not None:
            self.audit_log.close()
