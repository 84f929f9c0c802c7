"""Event-driven loops for the associations the gateway accepts.

pynetdicom runs two polling loops per association: the DUL thread sleeps 1 ms whenever it found nothing to
do, and the association thread sleeps 1 ms before every look at its message queue. A peer like storescu
sends one C-STORE and waits for its response, so each instance paid those sleeps three times (the request's
first PDU, the request reaching the handler, the response reaching the socket): about 1.5 ms of an instance
taking 9. Here both loops block instead until there is work: the DUL thread in ``select`` on the socket and
on a wake-up pipe written whenever a primitive is queued for it; the association thread on an event set
whenever a DIMSE message or an ACSE primitive is queued for it. Both still wake every ``IDLE_CHECK_S`` for
the timers (ARTIM, network idle) and for a kill. PDUs are read with ``recv_into`` in one buffer rather
than 4 KiB ``recv`` calls appended to a bytearray. A C-STORE request that finds the association idle is
served by the DUL thread itself (``_Turns``), which then sends the response on its next turn.

Only accepted associations change (``AcceptingRequestHandler``); the state machine, the ACSE/DIMSE
providers and every event are pynetdicom's own. ``SharedUIDContext`` makes accepting an association cheap.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import ssl
import threading
import time
from typing import Any, cast

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import AssociationSocket, RequestHandler

from .response import install_store_responder

log = logging.getLogger(__name__)
IDLE_CHECK_S = 0.05  # how late a timer expiry or a kill may be noticed: never on the path of a message


class _Waker:
    """A pipe a thread blocked in ``select`` can be woken through; safe to wake after it is closed."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._lock = threading.Lock()
        self._open = True
        self._pending = False

    def fileno(self) -> int:
        return self._read

    def wake(self) -> None:
        with self._lock:
            if self._open and not self._pending:  # one byte is enough until the reader drains it
                self._pending = True
                os.write(self._write, b"\0")

    def drain(self) -> None:
        with self._lock:
            if self._open and self._pending:
                self._pending = False
                try:
                    os.read(self._read, 64)
                except BlockingIOError:
                    pass

    def close(self) -> None:
        with self._lock:  # no wake() can write into a descriptor number the process reuses
            if self._open:
                self._open = False
                os.close(self._read)
                os.close(self._write)


class _NotifyingQueue(queue.Queue[Any]):
    """A queue that calls ``notify`` after every put."""

    def __init__(self, notify: Any) -> None:
        super().__init__()
        self._notify = notify

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._notify()


class EventDrivenDUL(DULServiceProvider):
    """The DUL provider, waiting in ``select`` for the peer's bytes or the local user's primitives."""

    def __init__(self, assoc: Association, user_ready: threading.Event) -> None:
        super().__init__(assoc)
        self._waker = _Waker()
        self.to_provider_queue = _NotifyingQueue(self._waker.wake)
        self.to_user_queue = _NotifyingQueue(user_ready.set)

    def kill_dul(self) -> None:
        super().kill_dul()
        self._waker.wake()

    def _wait_for_work(self) -> None:
        sock = self.socket.socket if self.socket is not None else None
        if sock is not None and isinstance(sock, ssl.SSLSocket) and sock.pending():
            return  # decrypted bytes already buffered: select would not see them
        try:
            waiting = [self._waker.fileno()]
            if sock is not None and sock.fileno() >= 0:
                waiting.append(sock.fileno())
            select.select(waiting, [], [], IDLE_CHECK_S)
        except (OSError, ValueError):
            time.sleep(self._run_loop_delay)  # the socket is closing: the state machine hears it next
        self._waker.drain()

    def run_reactor(self) -> None:
        """pynetdicom's loop (one primitive to send or one PDU to read, then one state-machine event, per
        turn), with the idle sleep replaced by a wait for either."""
        self._idle_timer.start()
        idle = False
        try:
            while True:
                if not self.assoc._dul_ready.is_set():
                    self.assoc._dul_ready.set()
                if idle:
                    self._wait_for_work()
                if self._kill_thread:
                    return
                if self.artim_timer.expired:
                    self.event_queue.put("Evt18")
                try:
                    if not self._process_recv_primitive() and self._is_transport_event():
                        self._idle_timer.restart()
                except Exception:
                    log.exception("DUL failure; aborting the association")
                    self._abort_hard()
                    return
                try:
                    event = self.event_queue.get(block=False)
                except queue.Empty:
                    idle = True
                    continue
                self.state_machine.do_action(event)
                idle = False
        finally:
            self._waker.close()

    def _abort_hard(self) -> None:
        """Send A-ABORT past the state machine, which an exception may have left inconsistent."""
        abort = A_ABORT_RQ()
        abort.source = 0x02
        abort.reason_diagnostic = 0x00
        if self.socket is not None:
            self.socket.send(abort.encode())
        self.assoc.is_aborted = True
        self.assoc.is_established = False
        self.assoc._kill = True
        self._kill_thread = True


def _recv_exactly(sock: AssociationSocket, nr_bytes: int) -> bytearray:
    """``AssociationSocket.recv``: ``nr_bytes`` bytes, or fewer when the peer closed the connection."""
    raw = sock.socket
    assert raw is not None
    buffer = bytearray(nr_bytes)
    view = memoryview(buffer)
    received = 0
    while received < nr_bytes:
        count = raw.recv_into(view[received:], nr_bytes - received)
        if count == 0:
            del view
            return buffer[:received]
        received += count
    return buffer


class _Turns:
    """Who serves the association's requests: its reactor thread, or (a C-STORE request arriving while the
    reactor is parked with nothing queued) the DUL thread that decoded it, at once.

    Serving a C-STORE in the DUL thread saves two thread hand-offs per instance (the request to the reactor,
    its response back to the DUL), each a wake-up the scheduler may delay by milliseconds on busy cores.
    pynetdicom's pause protocol still holds: a local ``send_*()`` clears ``_reactor_checkpoint`` and waits
    for ``_is_paused``, which stays False while either thread serves, so no message of its own interleaves
    with a response; requests queued meanwhile keep their order (nothing is served inline while any wait).
    """

    def __init__(self, assoc: Association) -> None:
        self.assoc = assoc
        self.lock = threading.Lock()
        self.busy = False  # a request is being served, by either thread
        self.parked = False  # the reactor waits for work or at its checkpoint

    def park(self) -> None:
        with self.lock:
            self.parked = True
            if not self.busy:
                self.assoc._is_paused = True

    def take(self) -> Any:
        """The reactor's next queued message, or None; marks it busy with it."""
        with self.lock:
            self.parked = False
            if self.busy:
                return None  # the DUL thread is serving: it runs to completion first
            self.assoc._is_paused = False
            context_id, msg = self.assoc.dimse.get_msg(block=False)
            if msg is None:
                return None
            self.busy = True
            return context_id, msg

    def claim_inline(self, primitive: Any, queued: queue.Queue[Any]) -> bool:
        if not (isinstance(primitive, C_STORE) and primitive.MessageIDBeingRespondedTo is None):
            return False
        with self.lock:
            if self.busy or not self.parked or not self.assoc._reactor_checkpoint.is_set() or queued.qsize():
                return False
            self.busy = True
            self.assoc._is_paused = False
            return True

    def done(self) -> None:
        with self.lock:
            self.busy = False
            if self.parked:
                self.assoc._is_paused = True


class _Requests(_NotifyingQueue):
    """The DIMSE provider's message queue, serving C-STORE requests inline when :class:`_Turns` allows."""

    def __init__(self, turns: _Turns, notify: Any) -> None:
        super().__init__(notify)
        self._turns = turns

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        context_id, primitive = item
        if not self._turns.claim_inline(primitive, self):
            super().put(item, block, timeout)
            return
        assoc = self._turns.assoc
        try:
            assoc._serve_request(primitive, context_id)
        except Exception:
            log.exception("serving a C-STORE failed; aborting the association")
            cast(EventDrivenDUL, assoc.dul)._abort_hard()
        finally:
            self._turns.done()


def _reactor(assoc: Association, ready: threading.Event, turns: _Turns) -> None:
    """``Association._run_reactor`` (serve a message, then check release, abort, the DUL and the idle
    timer, per turn), waiting on ``ready`` instead of sleeping 1 ms before each turn."""
    idle = False
    while not assoc._kill:
        turns.park()
        if idle:
            ready.wait(IDLE_CHECK_S)
        ready.clear()  # before looking, so a message queued from here on sets it again
        assoc._reactor_checkpoint.wait()  # a local send_*() call holds the reactor here
        taken = turns.take()
        idle = taken is None
        if taken is not None:
            try:
                assoc._serve_request(taken[1], taken[0])
            finally:
                turns.done()
        if assoc.is_established and assoc.acse.is_release_requested():
            assoc.acse.send_release(is_response=True)
            assoc.is_released = True
            assoc.is_established = False
            evt.trigger(assoc, evt.EVT_RELEASED, {})
            assoc.kill()
            return
        if assoc.acse.is_aborted():
            assoc.dul.receive_pdu(wait=False)  # EVT_ACSE_RECV fires for the abort
            assoc.is_aborted = True
            assoc.is_established = False
            evt.trigger(assoc, evt.EVT_ABORTED, {})
            assoc.kill()
            return
        if not assoc.dul.is_alive():
            assoc.kill()
            return
        if assoc.dul.idle_timer_expired():
            log.error("DIMSE network timeout reached")
            if assoc.network_timeout_response == "A-RELEASE":
                assoc._is_paused = True
                assoc._reactor_checkpoint.wait()
                assoc.release()
                assoc._is_paused = False
            else:
                assoc.abort()
            assoc.kill()
            return


def make_event_driven(assoc: Association) -> None:
    """Swap the (not yet started) association's DUL and reactor for the event-driven ones."""
    ready = threading.Event()
    polling = assoc.dul
    dul = EventDrivenDUL(assoc, ready)
    dul.socket = polling.socket
    dul.event_queue = polling.event_queue  # holds the transport connection indication (Evt5) already
    assoc.dul = dul
    # The timeouts live on the DUL's timers: set them again on the new one.
    assoc.acse_timeout = assoc.acse_timeout
    assoc.network_timeout = assoc.network_timeout
    turns = _Turns(assoc)
    assoc.dimse.msg_queue = _Requests(turns, ready.set)
    if dul.socket is not None and not isinstance(dul.socket.socket, ssl.SSLSocket):
        setattr(dul.socket, "recv", lambda nr_bytes: _recv_exactly(dul.socket, nr_bytes))  # noqa: B010
    setattr(assoc, "_run_reactor", lambda: _reactor(assoc, ready, turns))  # noqa: B010 - shadows the polling loop


class SharedUIDContext(PresentationContext):
    """A supported presentation context whose deep copies share its UIDs (immutable strings).

    pynetdicom deep-copies every supported context for each association it accepts; with every storage
    SOP class and two dozen transfer syntaxes that is ~8000 UIDs re-validated by pydicom, 50-150 ms of CPU
    per association (storescu opens one per run).
    """

    @classmethod
    def of(cls, context: PresentationContext) -> SharedUIDContext:
        clone = cls.__new__(cls)
        clone.__dict__.update({k: list(v) if isinstance(v, list) else v for k, v in vars(context).items()})
        return clone

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedUIDContext:
        return SharedUIDContext.of(self)


class AcceptingRequestHandler(RequestHandler):
    """pynetdicom's request handler, whose associations run the event-driven loops and answer C-STOREs
    with directly encoded responses."""

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        make_event_driven(assoc)
        install_store_responder(assoc)
        return assoc
