"""The ``dicomweb`` command: serve, import, sweep."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .settings import Settings, SettingsError, load_settings

app = typer.Typer(help="A standards-first DICOMweb archive.", no_args_is_help=True, add_completion=False)
console = Console(stderr=True)

DataOption = Annotated[
    Path | None, typer.Option("--data", help="Folder for the SQLite index and the local tier (default ./dicomweb-data)")
]
ConfigOption = Annotated[Path | None, typer.Option("--config", help="A TOML settings file")]


def _settings(config: Path | None, data: Path | None) -> Settings:
    try:
        return load_settings(config, data_dir=data)
    except SettingsError as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8080,
    data: DataOption = None,
    config: ConfigOption = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run the DICOMweb server (DICOMweb under /dicom-web)."""
    import uvicorn

    from .app import create_app

    settings = _settings(config, data)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    console.print(
        f"DICOMweb at http://{host}:{port}{settings.base_path}  index: {settings.resolved_database_url}  "
        f"storage: {', '.join(t.url for t in settings.resolved_tiers)}"
    )
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=10)


@app.command("import")
def import_(
    paths: Annotated[list[Path], typer.Argument(help="Files, folders, DICOMDIR files or zip files")],
    data: DataOption = None,
    config: ConfigOption = None,
    workers: Annotated[int, typer.Option(help="Instances ingested at once")] = 2,
) -> None:
    """Store DICOM files into the archive through the same ingest as STOW-RS."""
    from .archive import Archive
    from .importer import run_import

    missing = [p for p in paths if not p.exists()]
    if missing:
        console.print(f"[red]not found:[/red] {', '.join(map(str, missing))}")
        raise typer.Exit(2)
    archive = Archive.open(_settings(config, data))
    try:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=True,
        ) as progress:
            task = progress.add_task("importing", total=None)
            summary = run_import(archive, paths, lambda label, result: progress.advance(task), workers=workers)
    finally:
        archive.close()
    console.print(
        f"stored {summary.stored}, duplicates {summary.duplicates}, replaced {summary.replaced}, "
        f"skipped {len(summary.skipped)} (not DICOM), failed {len(summary.failed)}"
    )
    for label, reason in summary.failed:
        console.print(f"  [red]failed[/red] {label}: {reason}")
    if summary.failed:
        raise typer.Exit(1)


@app.command()
def sweep(
    data: DataOption = None,
    config: ConfigOption = None,
    grace: Annotated[float | None, typer.Option(help="Seconds a blob must be old to count as orphan")] = None,
) -> None:
    """Remove stored blobs that no index row names, and spool debris left by crashes."""
    from .archive import Archive

    archive = Archive.open(_settings(config, data))
    try:
        report = archive.sweep(grace)
    finally:
        archive.close()
    console.print(
        f"removed {report.orphans_removed} orphan blobs, {report.temporaries_removed} temporary files, "
        f"{report.spool_files_removed} spool files"
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
