"""Policy records in the index: care relationships, access grants with approvals, research shares.

The services enforce who may create, approve, end and see each record (asking a ``Permissions``, which the
policy engine implements); ``policy_routes`` is their admin REST API, ``records.cli`` their commands.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from .care import CareRelationships
from .errors import RecordError
from .grants import Grants
from .models import AccessGrant, CareRelationship, ResearchShare
from .permissions import Permissions
from .shares import ResearchShares


class PolicyRecords:
    """The three record services over one index."""

    def __init__(self, engine: Engine, permissions: Permissions, *, legal_max_days: int = 365) -> None:
        self.grants = Grants(engine, permissions, legal_max_days=legal_max_days)
        self.care = CareRelationships(engine, permissions)
        self.shares = ResearchShares(engine, permissions)


__all__ = ["AccessGrant", "CareRelationship", "CareRelationships", "Grants", "Permissions", "PolicyRecords",
           "RecordError", "ResearchShare", "ResearchShares"]
