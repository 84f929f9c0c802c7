"""Exceptions raised by the series container."""

from __future__ import annotations


class ContainerError(Exception):
    """Base class: the container is unusable for the requested operation."""


class ContainerCorruptError(ContainerError):
    """Stored bytes failed a checksum (or decoded to wrong pixels).

    ``sop_instance_uid`` and ``frame`` (1-based, ``None`` for the header or the whole instance) name
    what the damaged block belongs to; both are ``None`` when the container's own index is damaged.
    """

    def __init__(self, message: str, *, sop_instance_uid: str | None = None, frame: int | None = None) -> None:
        where = []
        if sop_instance_uid is not None:
            where.append(f"SOP Instance UID {sop_instance_uid}")
        if frame is not None:
            where.append(f"frame {frame}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)
        self.sop_instance_uid = sop_instance_uid
        self.frame = frame


class InstanceNotFoundError(ContainerError, KeyError):
    """No instance with this SOP Instance UID (or no such frame) in the container."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""
