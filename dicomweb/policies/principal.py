"""The principal: who is asking, as every transport hands it to the services and the policy engine."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class NationalId:
    """A patient identity as a national registry issues it: matched against PatientID with its issuer
    (an empty issuer here matches any issuer) and against Other Patient IDs."""

    value: str
    issuer: str = ""


@dataclass(frozen=True)
class Principal:
    """A validated identity: from a bearer token, a local user, a DIMSE peer's AE title, or the system.

    ``subject`` is stable and unique per identity provider (the token's ``sub``, ``local:NAME``,
    ``ae:TITLE``, ``system``); roles name entries of the role rules; the attributes are what rules match.
    """

    subject: str
    roles: frozenset[str] = frozenset()
    name: str = ""  # display name; also a DICOM person name (Family^Given) for referring-physician rules
    institution: str = ""
    department: str = ""
    national_ids: tuple[NationalId, ...] = ()
    issuer: str = ""  # the token issuer; "local" for the embedded issuer; "" for system and DIMSE
    via: str = "token"  # token | dimse | system
    extra: tuple[tuple[str, str], ...] = field(default=())  # further mapped claims, for audit and rules

    @property
    def is_system(self) -> bool:
        return self.via == "system"

    @property
    def role_text(self) -> str:
        return ",".join(sorted(self.roles))


# Requests when authentication is off, CLI commands and background jobs act as the system: every right.
SYSTEM = Principal(subject="system", roles=frozenset({"admin"}), name="system", via="system")
