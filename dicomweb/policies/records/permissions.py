"""What the records need to know about the caller and the study; the policy engine answers it."""

from __future__ import annotations

from typing import Protocol

from ..principal import Principal

# The capabilities of ``may_manage``, as the role rules name them.
CARE = "care"  # create and end the care relationships of an institution
RESEARCH_SHARE = "research_share"  # share and unshare an institution's studies for research
APPROVE_LEGAL = "approve_legal"  # the institution's approval of court and lawyer requests
SUPERVISE = "supervise"  # approve supervised access
GRANTS_READ = "grants_read"  # list every grant of an institution


class Permissions(Protocol):
    def is_patient_of(self, principal: Principal, study_uid: str) -> bool:
        """Whether one of the principal's national IDs is the study's patient."""
        ...

    def study_institution(self, study_uid: str) -> str | None:
        """The study's Institution Name; None: no such study (or one the records must treat as absent)."""
        ...

    def may_manage(self, principal: Principal, capability: str, institution: str) -> bool:
        """Whether the principal holds ``capability`` in ``institution``."""
        ...
