"""The ``dicomweb`` command: serve, import, sweep, tiers, migrate, jobs, worker."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .audit.cli import audit_app
from .cli_support import ConfigOption, DataOption, settings_or_exit
from .packing_cli import archive_app
from .policies.identity.cli import token_command, users_app
from .policies.records.cli import care_app, grants_app, research_app
from .settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from .archive import Archive

app = typer.Typer(help="A standards-first DICOMweb archive.", no_args_is_help=True, add_completion=False)
app.add_typer(archive_app, name="archive")  # pack, unpack, verify (issue 8)
app.add_typer(users_app, name="users")  # local users of the embedded token issuer (issue 6)
app.add_typer(grants_app, name="grants")  # access grants and their approvals (issue 6)
app.add_typer(care_app, name="care")  # care relationships (issue 6)
app.add_typer(research_app, name="research")  # research shares (issue 6)
app.add_typer(audit_app, name="audit")  # verify, list, export the audit log (issue 6)
console = Console(stderr=True)



def _settings(config: Path | None, data: Path | None) -> Settings:
    return settings_or_exit(config, data)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8080,
    data: DataOption = None,
    config: ConfigOption = None,
    workers: Annotated[int | None, typer.Option(help="HTTP server processes (default: http_workers, 1)")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run the DICOMweb server (DICOMweb under /dicom-web)."""
    from .archive import Archive

    settings = _settings(config, data)
    if workers is not None:
        if workers < 1:
            console.print("[red]--workers must be at least 1[/red]")
            raise typer.Exit(2)
        settings = replace(settings, http_workers=workers)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    console.print(
        f"DICOMweb at http://{host}:{port}{settings.base_path}  index: {settings.resolved_database_url}  "
        f"storage: {', '.join(t.url for t in settings.resolved_tiers)}"
        + (f"  ({settings.http_workers} processes)" if settings.http_workers > 1 else "")
    )
    if settings.dimse_port is None:
        _serve_http(settings, config, None, host, port, log_level)
        return
    # The DIMSE gateway (issue 7) runs beside HTTP in this process, over the same opened archive.
    from .plugins.dimse import DimseGateway

    archive = Archive.open(settings)
    gateway = DimseGateway(archive)
    try:
        dimse_port = gateway.start()
        console.print(f"DIMSE {settings.dimse_ae_title} at {settings.dimse_host}:{dimse_port}")
        _serve_http(settings, config, archive, host, port, log_level)
    finally:
        gateway.stop()
        archive.close()


def _serve_http(settings: Settings, config: Path | None, archive: Archive | None, host: str, port: int,
                log_level: str) -> None:
    import uvicorn

    from .app import WORKER_LOG_LEVEL, create_app

    common: dict[str, Any] = {"host": host, "port": port, "log_level": log_level, "access_log": False,
                              "timeout_graceful_shutdown": 10}
    if settings.http_workers == 1:
        uvicorn.run(create_app(settings, archive), **common)
        return
    # Several processes share the listening socket; each builds its whole app (archive, ingest workers,
    # background jobs) from the environment set here. The index is migrated once, before any of them starts.
    from .archive import Archive

    if archive is None:
        Archive.open(settings, ingest_processes=0).close()
    os.environ.update(worker_environment(settings, config))
    os.environ[WORKER_LOG_LEVEL] = log_level
    uvicorn.run("dicomweb.app:app_from_environment", factory=True, workers=settings.http_workers, **common)


def worker_environment(settings: Settings, config: Path | None) -> dict[str, str]:
    """What a worker process needs to load the very settings this process has: the configuration file, and
    the command line's overrides as the environment variables that come after it. The default number of
    ingest processes is shared out between the workers instead of multiplied by them."""
    env = {"DICOMWEB_DATA_DIR": str(settings.data_dir.resolve()), "DICOMWEB_HTTP_WORKERS": "1"}
    if config is not None:
        env["DICOMWEB_CONFIG"] = str(config.resolve())
    if settings.ingest_processes < 0:
        from .archive import default_ingest_processes

        share = -(-default_ingest_processes() // settings.http_workers)  # rounded up: never none by dividing
        env["DICOMWEB_INGEST_PROCESSES"] = str(share)
    return env


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@app.command()
def dimse(
    data: DataOption = None,
    config: ConfigOption = None,
    port: Annotated[int | None, typer.Option(help="DIMSE port (default: dimse_port, else 11112)")] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: dimse_host)")] = None,
    ae_title: Annotated[str | None, typer.Option("--ae-title", help="The archive's AE title")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run only the DIMSE gateway: echo, store, find, get, move, commitment, worklist, MPPS."""
    import signal
    import threading

    from .archive import Archive
    from .plugins.dimse import DimseGateway

    settings = _settings(config, data)
    overrides = {"dimse_port": port if port is not None else (11112 if settings.dimse_port is None else None),
                 "dimse_host": host, "dimse_ae_title": ae_title}
    try:
        settings = load_settings(config, data_dir=data, **overrides)
    except SettingsError as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    archive = Archive.open(settings)
    gateway = DimseGateway(archive)
    signal.signal(signal.SIGTERM, _interrupt)  # stop as on Ctrl-C: close the archive and its workers
    try:
        bound = gateway.start()
        console.print(f"DIMSE {settings.dimse_ae_title} at {settings.dimse_host}:{bound}  "
                      f"index: {settings.resolved_database_url}")
        threading.Event().wait()  # until Ctrl-C or SIGTERM
    except KeyboardInterrupt:
        pass
    finally:
        gateway.stop()
        archive.close()


@app.command("import")
def import_(
    paths: Annotated[list[Path], typer.Argument(help="Files, folders, DICOMDIR files or zip files")],
    data: DataOption = None,
    config: ConfigOption = None,
    workers: Annotated[int | None, typer.Option(help="Instances ingested at once (default: one per core)")] = None,
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
            summary = run_import(archive, paths, lambda label, result: progress.advance(task),
                                 workers=workers or archive.ingest_parallelism)
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


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            return f"{amount:.1f} {unit}" if unit != "B" else f"{int(amount)} B"
        amount /= 1024
    return str(value)


@app.command()
def tiers(data: DataOption = None, config: ConfigOption = None) -> None:
    """The storage tiers: role, URL, capacity, and the studies, instances and bytes on each."""
    from rich.table import Table

    from .archive import Archive
    from .backends.lifecycle import usage

    archive = Archive.open(_settings(config, data), ingest_processes=0)
    try:
        found = usage(archive.engine, archive.tiers)
    finally:
        archive.close()
    table = Table("tier", "role", "url", "studies", "instances", "bytes", "capacity", "used")
    for t in found:
        used = f"{t.bytes / t.capacity_bytes:.0%}" if t.capacity_bytes else "-"
        table.add_row(t.name, t.role, t.url, str(t.studies), str(t.instances), _size(t.bytes),
                      _size(t.capacity_bytes), used)
    Console(width=max(160, Console().width)).print(table)  # never cut names or URLs


@app.command()
def migrate(
    data: DataOption = None,
    config: ConfigOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the moves the rules ask for; move nothing")] = False,
    queue: Annotated[bool, typer.Option("--queue", help="Queue the moves as jobs instead of moving here")] = False,
    study: Annotated[str | None, typer.Option(help="Move only this study (with --to)")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Target tier for --study")] = None,
) -> None:
    """Apply the lifecycle rules now (or move one study): copy, verify, switch, delete; resumable."""
    import time

    from .archive import Archive
    from .backends.lifecycle import PlannedMove, plan
    from .services.migration import MigrationError, MigrationService

    settings = _settings(config, data)
    archive = Archive.open(settings, ingest_processes=0)
    try:
        if study is not None or to is not None:
            if not (study and to) or to not in archive.tiers.tiers:
                console.print(f"[red]--study needs --to naming a tier:[/red] {', '.join(archive.tiers.tiers)}")
                raise typer.Exit(2)
            moves = [PlannedMove(study, "*", to, 0, 0, "asked on the command line")]
        else:
            try:
                moves = plan(archive.engine, archive.tiers, settings)
            except SettingsError as exc:
                console.print(f"[red]configuration error:[/red] {exc}")
                raise typer.Exit(2) from None
        for m in moves:
            console.print(f"{m.study_instance_uid}: {m.source} -> {m.target}, {m.instances} instances, "
                          f"{_size(m.bytes)} ({m.reason})")
        if dry_run:
            console.print(f"{len(moves)} moves planned, {_size(sum(m.bytes for m in moves))}; nothing moved (dry run)")
            return
        if queue:
            from .jobs import Jobs

            jobs = Jobs(archive)
            for m in moves:
                job_id, _ = jobs.submit("migrate_study", {"study": m.study_instance_uid, "target": m.target},
                                        f"study:{m.study_instance_uid}")
                console.print(f"queued job {job_id} for {m.study_instance_uid}")
            jobs.close()
            return
        mover = MigrationService(archive.engine, archive.tiers, drain_seconds=settings.migration_drain_seconds)
        recovered = mover.recover()
        if recovered.moves:
            console.print(f"recovered {recovered.moves} interrupted moves, removed {recovered.copies_removed} copies")
        started, moved, failed, total_bytes = time.monotonic(), 0, 0, 0
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("moving", total=sum(m.bytes for m in moves) or None)
            for m in moves:
                try:
                    report = mover.move_study(m.study_instance_uid, m.target,
                                              lambda n: progress.advance(task, n))
                except MigrationError as exc:
                    failed += 1
                    console.print(f"  [red]failed[/red] {m.study_instance_uid}: {exc}")
                    continue
                moved += report.instances
                total_bytes += report.bytes
        elapsed = max(time.monotonic() - started, 1e-9)
        console.print(f"moved {moved} instances of {len(moves) - failed} studies, {_size(total_bytes)} in "
                      f"{elapsed:.1f} s ({total_bytes / elapsed / 1e6:.1f} MB/s), {failed} studies failed")
        if failed:
            raise typer.Exit(1)
    finally:
        archive.close()


@app.command()
def jobs(
    data: DataOption = None,
    config: ConfigOption = None,
    state: Annotated[str | None, typer.Option(help="queued, running, retrying, succeeded or failed")] = None,
    limit: Annotated[int, typer.Option(help="How many jobs, newest first")] = 20,
    retry: Annotated[int | None, typer.Option(help="Queue this failed job again")] = None,
) -> None:
    """Background jobs: counts by state, and the newest jobs with attempts and last error."""
    from rich.table import Table

    from .archive import Archive
    from .jobs.store import STATES, JobStore

    if state is not None and state not in STATES:
        console.print(f"[red]--state must be one of[/red] {', '.join(STATES)}")
        raise typer.Exit(2)
    archive = Archive.open(_settings(config, data), ingest_processes=0)
    try:
        if retry is not None:
            from .jobs import Jobs

            queue = Jobs(archive)
            ok = queue.retry(retry)
            queue.close()
            console.print(f"job {retry} queued again" if ok else f"[red]job {retry} is not a failed job[/red]")
            if not ok:
                raise typer.Exit(1)
            return
        store = JobStore(archive.engine)
        counts, found = store.counts(), store.recent(state, limit)
    finally:
        archive.close()
    console.print("  ".join(f"{k}: {v}" for k, v in counts.items()))
    table = Table("id", "kind", "state", "attempts", "payload", "worker", "updated", "last error")
    for j in found:
        table.add_row(str(j.id), j.kind, j.state, f"{j.attempts}/{j.max_attempts}",
                      ", ".join(f"{k}={v}" for k, v in j.payload.items()), j.worker,
                      j.updated_at.strftime("%Y-%m-%d %H:%M:%S"), (j.last_error or "")[:80])
    Console(width=max(160, Console().width)).print(table)  # never cut names or URLs


@app.command()
def worker(
    data: DataOption = None,
    config: ConfigOption = None,
    threads: Annotated[int, typer.Option(help="Jobs run at once in this process")] = 1,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run background jobs from the broker in jobs_broker_url (start several for more throughput)."""
    from .archive import Archive
    from .jobs import Jobs
    from .jobs.dramatiq_engine import run_worker

    settings = _settings(config, data)
    if not settings.jobs_broker_url:
        console.print("[red]jobs_broker_url is not set:[/red] jobs run inside `dicomweb serve` (embedded default)")
        raise typer.Exit(2)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    archive = Archive.open(settings, ingest_processes=0)
    queue = Jobs(archive)
    try:
        run_worker(queue.context, queue.store, threads)
    finally:
        archive.close()


app.command("token")(token_command)  # a bearer token for a local user (issue 6)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
