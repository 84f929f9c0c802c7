"""The policy engine for DIMSE callers: each known peer acts as the local user its ``principal`` names.

A peer without a principal (or an unknown caller, when admitted) acts as a bare modality: it may store as the
peer table allows, and with authorization on it finds and retrieves nothing. De-identified views are not
offered over DIMSE (no pseudonym round trip there): what a principal sees only anonymized stays hidden.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, false, not_

from ...policies.engine import PolicyEngine
from ...policies.principal import Principal


@dataclass(frozen=True)
class DimsePolicy:
    engine: PolicyEngine
    principal_names: dict[str, str]  # AE title -> local user name
    lookup_user: Callable[[str], Principal | None]

    def principal(self, ae_title: str) -> Principal | None:
        name = self.principal_names.get(ae_title.strip())
        if not name:
            return None
        found = self.lookup_user(name)
        # A peer naming a user that does not exist (any more) gets no rights rather than a modality's.
        return found if found is not None else Principal(subject=f"ae:{ae_title.strip()}", via="dimse")

    def visible(self, ae_title: str) -> ColumnElement[bool] | None:
        """The studies a C-FIND from this caller may match (None: every study)."""
        principal = self.principal(ae_title)
        if principal is None:
            return false()
        view = self.engine.view(principal)
        if view.anonymized is None:
            return view.visible
        return not_(view.anonymized) if view.visible is None else and_(view.visible, not_(view.anonymized))

    def may_retrieve(self, ae_title: str, study_uid: str) -> bool:
        principal = self.principal(ae_title)
        if principal is None:
            return False
        decision = self.engine.decide(principal, study_uid)
        return decision.allowed and not decision.anonymized

    def store_institutions(self, ae_title: str) -> frozenset[str] | None:
        principal = self.principal(ae_title)
        return None if principal is None else self.engine.store_institutions(principal)
