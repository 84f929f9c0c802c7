"""C-STORE responses encoded directly, for the peer waiting on each one before it sends the next instance.

pynetdicom builds every response's command set as a pydicom Dataset and encodes it twice (once more for
the group length): 0.4-0.7 ms a response, on the path between two instances. A plain C-STORE-RSP (status
and UIDs, no error comment or offending element) is a fixed layout of seven elements in implicit VR little
endian (PS3.7 9.3.1.2, E.1); anything else goes through pynetdicom. The bytes are pynetdicom's
(tests/dimse compares them).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA

C_STORE_RSP = 0x8001
NO_DATA_SET = 0x0101
LAST_COMMAND_FRAGMENT = b"\x03"  # message control header: command, last fragment (PS3.8 E.2)


def _element(element: int, value: bytes) -> bytes:
    return struct.pack("<HHI", 0x0000, element, len(value)) + value


def _uid(value: Any) -> bytes:
    raw = str(value).encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def encode_store_response(primitive: C_STORE) -> bytes | None:
    """The command set of a plain C-STORE response, or None when it needs more than status and UIDs."""
    if primitive.MessageIDBeingRespondedTo is None or primitive.Status is None:
        return None
    if primitive.ErrorComment is not None or primitive.OffendingElement is not None:
        return None
    parts = []
    if primitive.AffectedSOPClassUID is not None:
        parts.append(_element(0x0002, _uid(primitive.AffectedSOPClassUID)))
    parts += [
        _element(0x0100, struct.pack("<H", C_STORE_RSP)),
        _element(0x0120, struct.pack("<H", int(primitive.MessageIDBeingRespondedTo))),
        _element(0x0800, struct.pack("<H", NO_DATA_SET)),
        _element(0x0900, struct.pack("<H", int(primitive.Status))),
    ]
    if primitive.AffectedSOPInstanceUID is not None:
        parts.append(_element(0x1000, _uid(primitive.AffectedSOPInstanceUID)))
    body = b"".join(parts)
    return _element(0x0000, struct.pack("<I", len(body))) + body


def install_store_responder(assoc: Association) -> None:
    """Send the association's plain C-STORE responses through :func:`encode_store_response`."""
    original: Callable[[Any, int], None] = assoc.dimse.send_msg

    def send_msg(primitive: Any, context_id: int) -> None:
        command = encode_store_response(primitive) if type(primitive) is C_STORE else None
        limit = assoc.requestor.maximum_length or 0
        if (command is None or (limit and len(command) + 6 > limit)
                or assoc.get_handlers(evt.EVT_DIMSE_SENT)):  # whoever listens gets pynetdicom's message object
            original(primitive, context_id)
            return
        pdata = P_DATA()
        pdata.presentation_data_value_list.append((context_id, LAST_COMMAND_FRAGMENT + command))
        assoc.dul.send_pdu(pdata)

    setattr(assoc.dimse, "send_msg", send_msg)  # noqa: B010 - an instance attribute shadows the method
