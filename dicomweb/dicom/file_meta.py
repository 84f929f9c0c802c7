"""Part 10 file meta information (PS3.10 7.1) written directly, for instances that arrive without it.

A C-STORE data set comes without the preamble and group 0002; building them through a pydicom
FileMetaDataset and ``write_file_meta_info`` cost about 0.3 ms per instance, a tenth of the gateway's work.
The bytes are the same as pydicom's (tests/dimse compares them).
"""

from __future__ import annotations

import struct

PREAMBLE = b"\x00" * 128 + b"DICM"


def _element(group_element: int, vr: bytes, value: bytes) -> bytes:
    head = struct.pack("<HH", group_element >> 16, group_element & 0xFFFF) + vr
    if vr == b"OB":
        return head + b"\x00\x00" + struct.pack("<I", len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def _uid(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def _short_string(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b" " if len(raw) % 2 else raw


def file_meta_bytes(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str,
    implementation_class_uid: str, implementation_version_name: str,
) -> bytes:
    """Preamble, 'DICM' and the file meta group, explicit VR little endian."""
    body = b"".join([
        _element(0x00020001, b"OB", b"\x00\x01"),
        _element(0x00020002, b"UI", _uid(sop_class_uid)),
        _element(0x00020003, b"UI", _uid(sop_instance_uid)),
        _element(0x00020010, b"UI", _uid(transfer_syntax_uid)),
        _element(0x00020012, b"UI", _uid(implementation_class_uid)),
        _element(0x00020013, b"SH", _short_string(implementation_version_name)),
    ])
    return PREAMBLE + _element(0x00020000, b"UL", struct.pack("<I", len(body))) + body
