"""What every ``dicomweb`` sub-command shares: the --data and --config options, and the opened index."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy.engine import Engine

from .settings import Settings, SettingsError, load_settings

DataOption = Annotated[
    Path | None, typer.Option("--data", help="Folder for the SQLite index and the local tier (default ./dicomweb-data)")
]
ConfigOption = Annotated[Path | None, typer.Option("--config", help="A TOML settings file")]
_console = Console(stderr=True)


def settings_or_exit(config: Path | None, data: Path | None) -> Settings:
    """The settings, or exit 2 naming what is wrong with them."""
    try:
        return load_settings(config, data_dir=data)
    except SettingsError as exc:
        _console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


@contextmanager
def opened_index(config: Path | None, data: Path | None) -> Iterator[tuple[Settings, Engine]]:
    """The settings and the index, migrated to the newest schema; the engine is disposed of afterwards."""
    from .index import db

    settings = settings_or_exit(config, data)
    engine = db.make_engine(settings.resolved_database_url)
    try:
        db.upgrade(engine)
        yield settings, engine
    finally:
        engine.dispose()
