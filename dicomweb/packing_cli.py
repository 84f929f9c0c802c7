"""``dicomweb archive pack|unpack|verify``: series containers from the command line (issue 8)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .cli_support import ConfigOption, DataOption, settings_or_exit

if TYPE_CHECKING:
    from .services.packing import PackingService

archive_app = typer.Typer(help="Pack series into lossless containers, unpack them, verify them.",
                          no_args_is_help=True)
console = Console(stderr=True)



@contextmanager
def _service(config: Path | None, data: Path | None) -> Iterator[PackingService]:
    from .archive import Archive
    from .services.packing import PackingService

    archive = Archive.open(settings_or_exit(config, data), ingest_processes=0)
    try:
        yield PackingService(archive.engine, archive.tiers, archive.staging_dir)
    finally:
        archive.close()


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


def _size(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


@archive_app.command()
def pack(
    series: Annotated[list[str] | None, typer.Option("--series", help="Series Instance UID (repeatable)")] = None,
    older_than: Annotated[float | None, typer.Option(
        "--older-than", help="Pack every series with loose instances whose newest instance is this many days old")
    ] = None,
    codec: Annotated[str, typer.Option(help="auto (trial: smallest that reads fast), or a codec name")] = "auto",
    keep_loose: Annotated[bool, typer.Option("--keep-loose", help="Keep the loose files after packing")] = False,
    data: DataOption = None,
    config: ConfigOption = None,
) -> None:
    """Pack series into containers; every instance is checked byte for byte before a loose file goes."""
    from .backends.tiers import StorageError
    from .services.packing import PackingError

    if not series and older_than is None:
        console.print("[red]name series with --series, or choose them by age with --older-than DAYS[/red]")
        raise typer.Exit(2)
    t0 = time.perf_counter()
    failed = before = after = packed = unchanged = 0
    with _service(config, data) as service:
        targets = list(series or []) or service.series_to_pack(older_than or 0.0)
        with _progress() as progress:
            task = progress.add_task("packing", total=len(targets))
            for uid in targets:
                try:
                    outcome = service.pack(uid, codec=codec, keep_loose=keep_loose)
                except (PackingError, StorageError, ValueError) as exc:
                    failed += 1
                    progress.console.print(f"  [red]failed[/red] {uid}: {exc}")
                else:
                    if outcome.status == "unchanged":
                        unchanged += 1
                        progress.console.print(f"  {uid}: already packed"
                                               + (f", removed {outcome.loose_removed} loose files"
                                                  if outcome.loose_removed else ""))
                    else:
                        packed += 1
                        before, after = before + outcome.bytes_in, after + outcome.bytes_out
                        progress.console.print(
                            f"  {uid}: {outcome.instances} instances, {_size(outcome.bytes_in)} -> "
                            f"{_size(outcome.bytes_out)} ({outcome.codec}, {outcome.seconds:.1f} s)")
                progress.advance(task)
    ratio = f"{before / after:.2f}" if after else "-"
    console.print(f"packed {packed} series, {unchanged} already packed, {failed} failed; "
                  f"bytes before {before:,}, after {after:,}, ratio {ratio}, time {time.perf_counter() - t0:.1f} s")
    if failed:
        raise typer.Exit(1)


@archive_app.command()
def unpack(
    series: Annotated[list[str], typer.Option("--series", help="Series Instance UID (repeatable)")],
    data: DataOption = None,
    config: ConfigOption = None,
) -> None:
    """Restore a packed series' original files (each checked against its SHA-256) and drop its container."""
    from .backends.tiers import StorageError
    from .services.containers import InstanceIntegrityError
    from .services.packing import PackingError

    t0 = time.perf_counter()
    failed = restored = instances = 0
    with _service(config, data) as service, _progress() as progress:
        task = progress.add_task("unpacking", total=len(series))
        for uid in series:
            try:
                outcome = service.unpack(uid)
            except (PackingError, InstanceIntegrityError, StorageError) as exc:
                failed += 1
                progress.console.print(f"  [red]failed[/red] {uid}: {exc}")
            else:
                instances += outcome.instances
                restored += outcome.bytes_restored
                note = outcome.message or f"{outcome.instances} instances, {_size(outcome.bytes_restored)} restored"
                progress.console.print(f"  {uid}: {note}")
            progress.advance(task)
    console.print(f"unpacked {instances} instances, {restored:,} bytes restored, {failed} series failed, "
                  f"time {time.perf_counter() - t0:.1f} s")
    if failed:
        raise typer.Exit(1)


@archive_app.command()
def verify(data: DataOption = None, config: ConfigOption = None) -> None:
    """Check every container: block checksums, and each instance's SHA-256 (every frame decoded)."""
    with _service(config, data) as service, _progress() as progress:
        task = progress.add_task("verifying", total=len(service.packed_series()))
        result = service.verify(lambda uid: progress.advance(task))
    console.print(f"checked {result.containers} containers, {result.instances} instances, "
                  f"{result.bytes_checked:,} bytes in {result.seconds:.1f} s: "
                  + ("all intact" if result.ok else f"[red]{len(result.corrupt)} problems[/red]"))
    for bad in result.corrupt:
        what = f"instance {bad.sop_instance_uid}" if bad.sop_instance_uid else "container"
        console.print(f"  [red]corrupt[/red] series {bad.series_instance_uid}, {what}: {bad.detail}")
    if not result.ok:
        raise typer.Exit(1)
