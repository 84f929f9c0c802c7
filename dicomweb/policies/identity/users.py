"""Local users of the embedded issuer: the ``auth_user`` table (migration ``auth_users``) and its services."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Boolean, Column, DateTime
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, select

from dicomweb.index.models import utcnow

from .passwords import check_password, hash_password, waste_time

_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_ROLE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class UserError(ValueError):
    """A user cannot be added or found; the message says why."""


class LocalUser(SQLModel, table=True):
    __tablename__ = "auth_user"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True)
    # Empty: no password login (a DIMSE or service account; `dicomweb token` still mints for it).
    password_hash: str = Field(default="", max_length=200)
    roles: str = Field(default="", max_length=1000)  # comma-separated role names
    name: str = Field(default="", max_length=330)
    institution: str = Field(default="", max_length=64)
    department: str = Field(default="", max_length=64)
    national_id: str = Field(default="", max_length=64)
    national_id_issuer: str = Field(default="", max_length=64)
    disabled: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, default=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))

    @property
    def role_set(self) -> frozenset[str]:
        return frozenset(r for r in self.roles.split(",") if r)


@dataclass(frozen=True)
class UserInfo:
    """A user as the services hand it out: everything but the password hash."""

    username: str
    roles: tuple[str, ...]
    name: str
    institution: str
    department: str
    national_id: str
    national_id_issuer: str
    disabled: bool
    has_password: bool
    created_at: datetime


def _info(row: LocalUser) -> UserInfo:
    return UserInfo(
        username=row.username, roles=tuple(sorted(row.role_set)), name=row.name, institution=row.institution,
        department=row.department, national_id=row.national_id, national_id_issuer=row.national_id_issuer,
        disabled=row.disabled, has_password=bool(row.password_hash), created_at=row.created_at,
    )


def _check_lengths(**values: str) -> None:
    limits = {"name": 330, "institution": 64, "department": 64, "national_id": 64, "national_id_issuer": 64}
    for field_name, value in values.items():
        if len(value) > limits[field_name]:
            raise UserError(f"{field_name} is longer than {limits[field_name]} characters")


def add_user(
    engine: Engine,
    username: str,
    *,
    roles: list[str] | tuple[str, ...],
    password: str | None,
    name: str = "",
    institution: str = "",
    department: str = "",
    national_id: str = "",
    national_id_issuer: str = "",
) -> UserInfo:
    """Create a local user; ``password=None`` makes one that cannot log in with a password."""
    if not _USERNAME.fullmatch(username):
        raise UserError(f"user name {username!r} must be 1-64 letters, digits, '.', '_', '@' or '-'")
    bad = [r for r in roles if not _ROLE.fullmatch(r)]
    if bad:
        raise UserError(f"role names are letters, digits, '_', '.', ':' or '-': {', '.join(map(repr, bad))}")
    if not roles:
        raise UserError("a user needs at least one role")
    if password is not None and not password:
        raise UserError("the password is empty")
    _check_lengths(name=name, institution=institution, department=department, national_id=national_id,
                   national_id_issuer=national_id_issuer)
    row = LocalUser(
        username=username, password_hash=hash_password(password) if password is not None else "",
        roles=",".join(sorted(set(roles))), name=name, institution=institution, department=department,
        national_id=national_id, national_id_issuer=national_id_issuer,
    )
    with Session(engine) as session:
        session.add(row)
        try:
            session.commit()
        except IntegrityError:
            raise UserError(f"user {username!r} exists already") from None
        session.refresh(row)
        return _info(row)


def remove_user(engine: Engine, username: str) -> bool:
    """Delete a user; False when there was none."""
    with Session(engine) as session:
        row = session.exec(select(LocalUser).where(LocalUser.username == username)).first()
        if row is None:
            return False
        session.delete(row)
        session.commit()
        return True


def set_disabled(engine: Engine, username: str, disabled: bool) -> bool:
    """Disable (or enable) a user: its tokens stop working within the token cache's minute."""
    with Session(engine) as session:
        row = session.exec(select(LocalUser).where(LocalUser.username == username)).first()
        if row is None:
            return False
        row.disabled = disabled
        session.add(row)
        session.commit()
        return True


def list_users(engine: Engine) -> list[UserInfo]:
    with Session(engine) as session:
        return [_info(row) for row in session.exec(select(LocalUser).order_by(LocalUser.username))]


def get_user(engine: Engine, username: str) -> UserInfo | None:
    with Session(engine) as session:
        row = session.exec(select(LocalUser).where(LocalUser.username == username)).first()
        return _info(row) if row is not None else None


def verify_password(engine: Engine, username: str, password: str) -> UserInfo | None:
    """The user when the password is right and the user is enabled; None otherwise (same time either way)."""
    with Session(engine) as session:
        row = session.exec(select(LocalUser).where(LocalUser.username == username)).first()
        if row is None or not row.password_hash:
            waste_time(password)
            return None
        if not check_password(password, row.password_hash) or row.disabled:
            return None
        return _info(row)
