"""``dicomweb users add|list|remove|disable|enable`` and ``dicomweb token``: local users of the embedded issuer.

Heavy imports (SQL, crypto) wait inside the commands, so other commands start as fast as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ...cli_support import ConfigOption, DataOption, opened_index

if TYPE_CHECKING:
    pass

users_app = typer.Typer(help="Local users of the embedded token issuer.", no_args_is_help=True)
console = Console(stderr=True)

_index = opened_index


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(1)


@users_app.command("add")
def add(
    username: Annotated[str, typer.Argument(help="The login name (the token's subject)")],
    role: Annotated[list[str], typer.Option("--role", help="A role (repeat for more): doctor, patient, ...")],
    institution: Annotated[str, typer.Option(help="InstitutionName the user belongs to")] = "",
    department: Annotated[str, typer.Option(help="Department or section")] = "",
    national_id: Annotated[str, typer.Option("--national-id", help="National ID (a patient's PatientID)")] = "",
    national_id_issuer: Annotated[str, typer.Option("--national-id-issuer", help="Issuer of the national ID")] = "",
    name: Annotated[str, typer.Option(help="Person name, DICOM style: Family^Given")] = "",
    password: Annotated[str | None, typer.Option(help="The password (asked for when not given)")] = None,
    no_password: Annotated[bool, typer.Option("--no-password", help="No password login (tokens from the CLI, "
                                                                    "DIMSE peers)")] = False,
    data: DataOption = None,
    config: ConfigOption = None,
) -> None:
    """Add a local user."""
    from .users import UserError, add_user

    if no_password and password is not None:
        raise _fail("--password and --no-password exclude each other")
    if not no_password and password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with _index(config, data) as (_, engine):
        try:
            user = add_user(engine, username, roles=role, password=None if no_password else password, name=name,
                            institution=institution, department=department, national_id=national_id,
                            national_id_issuer=national_id_issuer)
        except UserError as exc:
            raise _fail(str(exc)) from None
    console.print(f"added user {user.username} ({', '.join(user.roles)})", highlight=False, markup=False)


@users_app.command("list")
def list_(data: DataOption = None, config: ConfigOption = None) -> None:
    """List the local users, one a line, tab-separated."""
    from .users import list_users

    with _index(config, data) as (_, engine):
        users = list_users(engine)
    typer.echo("username\troles\tname\tinstitution\tdepartment\tnational_id\tnational_id_issuer\tlogin\tstate")
    for user in users:
        typer.echo("\t".join([user.username, ",".join(user.roles), user.name, user.institution, user.department,
                              user.national_id, user.national_id_issuer,
                              "password" if user.has_password else "token-only",
                              "disabled" if user.disabled else "enabled"]))


@users_app.command("remove")
def remove(username: Annotated[str, typer.Argument()], data: DataOption = None, config: ConfigOption = None) -> None:
    """Remove a local user (its tokens stop working within a minute)."""
    from .users import remove_user

    with _index(config, data) as (_, engine):
        if not remove_user(engine, username):
            raise _fail(f"there is no user {username!r}")
    console.print(f"removed user {username}", highlight=False, markup=False)


def _set_disabled(username: str, disabled: bool, config: Path | None, data: Path | None) -> None:
    from .users import set_disabled

    with _index(config, data) as (_, engine):
        if not set_disabled(engine, username, disabled):
            raise _fail(f"there is no user {username!r}")
    console.print(f"{'disabled' if disabled else 'enabled'} user {username}", highlight=False, markup=False)


@users_app.command("disable")
def disable(username: Annotated[str, typer.Argument()], data: DataOption = None, config: ConfigOption = None) -> None:
    """Disable a local user: no login, and its tokens stop working within a minute."""
    _set_disabled(username, True, config, data)


@users_app.command("enable")
def enable(username: Annotated[str, typer.Argument()], data: DataOption = None, config: ConfigOption = None) -> None:
    """Enable a disabled local user again."""
    _set_disabled(username, False, config, data)


def token_command(
    username: Annotated[str, typer.Argument(help="A local user")],
    ttl: Annotated[int | None, typer.Option(help="Lifetime in seconds (default: auth_token_ttl_seconds)")] = None,
    data: DataOption = None,
    config: ConfigOption = None,
) -> None:
    """Print a signed bearer token for a local user (whoever holds the data folder may mint them)."""
    from .issuer import ExternalIssuerError, mint_token
    from .users import UserError

    with _index(config, data) as (settings, engine):
        try:
            token = mint_token(settings, engine, username, ttl)
        except (UserError, ExternalIssuerError, ValueError) as exc:
            raise _fail(str(exc)) from None
    typer.echo(token)
