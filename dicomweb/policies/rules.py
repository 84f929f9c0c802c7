"""The role rules: a TOML file an institution edits (``policy_file``), or the packaged default."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

READ_SCOPES = frozenset({
    "all", "own_patient", "care_relationship", "referring_physician", "department", "institution",
    "research_shared", "grant",
})
CAPABILITIES = frozenset({"care", "research_share", "approve_legal", "supervise", "grants_read", "operate"})
StoreRight = Literal["none", "own_institution", "any"]
AuditRight = Literal["none", "institution", "all"]


class RulesError(ValueError):
    """The rules file cannot be used; the message names the role and the key."""


@dataclass(frozen=True)
class ReadScope:
    scope: str
    anonymized: bool = False


@dataclass(frozen=True)
class RoleRule:
    read: tuple[ReadScope, ...] = ()
    store: StoreRight = "none"
    delete: bool = False
    audit: AuditRight = "none"
    manage: frozenset[str] = frozenset()
    reach: Literal["institution", "all"] = "institution"


@dataclass(frozen=True)
class Rules:
    roles: dict[str, RoleRule]
    source: str

    def for_roles(self, roles: frozenset[str]) -> list[RoleRule]:
        """The rules of the roles this installation knows; unknown roles give no rights."""
        return [self.roles[r] for r in sorted(roles) if r in self.roles]


def _read_scope(role: str, raw: Any) -> ReadScope:
    if isinstance(raw, str):
        raw = {"scope": raw}
    if not isinstance(raw, dict) or not isinstance(raw.get("scope"), str):
        raise RulesError(f"roles.{role}.read: each entry is a scope name or {{ scope = ..., anonymized = ... }}")
    unknown = set(raw) - {"scope", "anonymized"}
    if unknown:
        raise RulesError(f"roles.{role}.read: unknown keys {', '.join(sorted(unknown))}")
    if raw["scope"] not in READ_SCOPES:
        raise RulesError(f"roles.{role}.read: unknown scope {raw['scope']!r} (known: {', '.join(sorted(READ_SCOPES))})")
    return ReadScope(raw["scope"], bool(raw.get("anonymized", False)))


def _role(role: str, raw: Any) -> RoleRule:
    if not isinstance(raw, dict):
        raise RulesError(f"roles.{role} must be a table")
    unknown = set(raw) - {"read", "store", "delete", "audit", "manage", "reach"}
    if unknown:
        raise RulesError(f"roles.{role}: unknown keys {', '.join(sorted(unknown))}")
    read = raw.get("read", [])
    if not isinstance(read, list):
        raise RulesError(f"roles.{role}.read must be a list")
    store, audit, manage = raw.get("store", "none"), raw.get("audit", "none"), raw.get("manage", [])
    if store not in ("none", "own_institution", "any"):
        raise RulesError(f"roles.{role}.store must be 'none', 'own_institution' or 'any', not {store!r}")
    if audit not in ("none", "institution", "all"):
        raise RulesError(f"roles.{role}.audit must be 'none', 'institution' or 'all', not {audit!r}")
    if not isinstance(manage, list) or not set(manage) <= CAPABILITIES:
        raise RulesError(f"roles.{role}.manage must list some of {', '.join(sorted(CAPABILITIES))}")
    reach = raw.get("reach", "institution")
    if reach not in ("institution", "all"):
        raise RulesError(f"roles.{role}.reach must be 'institution' or 'all', not {reach!r}")
    if not isinstance(raw.get("delete", False), bool):
        raise RulesError(f"roles.{role}.delete must be true or false")
    return RoleRule(tuple(_read_scope(role, r) for r in read), store, raw.get("delete", False), audit,
                    frozenset(manage), reach)


def parse_rules(text: str, source: str) -> Rules:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source} is not valid TOML: {exc}") from None
    if set(raw) - {"roles"} or not isinstance(raw.get("roles"), dict):
        raise RulesError(f"{source} must hold only [roles.NAME] tables")
    return Rules({name: _role(name, body) for name, body in raw["roles"].items()}, source)


def load_rules(policy_file: str = "") -> Rules:
    if policy_file:
        path = Path(policy_file)
        try:
            return parse_rules(path.read_text(encoding="utf-8"), str(path))
        except OSError as exc:
            raise RulesError(f"cannot read the policy file {path}: {exc.strerror}") from None
    text = resources.files("dicomweb.policies").joinpath("default_rules.toml").read_text(encoding="utf-8")
    return parse_rules(text, "the packaged default rules")
