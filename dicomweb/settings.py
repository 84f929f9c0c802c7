"""One settings object, from defaults, an optional TOML file and ``DICOMWEB_*`` environment variables.

Precedence (highest first): explicit overrides (the CLI), environment, TOML file, defaults. A newcomer's
default needs no file at all: an SQLite index and a local storage folder under the data directory.

Environment variables: ``DICOMWEB_DATA_DIR``, ``DICOMWEB_DATABASE_URL``, ``DICOMWEB_CONFIG`` (a TOML file),
``DICOMWEB_ON_CONFLICT``, ``DICOMWEB_BASE_PATH``, ``DICOMWEB_CORS_ORIGINS`` (comma-separated).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

ConflictRule = Literal["reject", "replace"]


class SettingsError(ValueError):
    """The configuration cannot be used; the message names the setting."""


@dataclass(frozen=True)
class TierSettings:
    """A storage tier: a name, an fsspec URL and its options, and the role it plays."""

    name: str
    url: str
    role: Literal["local", "laboratory", "external"] = "local"
    options: dict[str, Any] = field(default_factory=dict)
    capacity_bytes: int | None = None


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("dicomweb-data")
    database_url: str | None = None
    base_path: str = "/dicom-web"
    tiers: tuple[TierSettings, ...] = ()
    write_tier: str | None = None
    # What to do when a stored SOP Instance UID arrives again with different bytes.
    on_conflict: ConflictRule = "reject"
    # STOW parts up to this size stay in memory; larger ones are spooled to the staging folder.
    spool_memory_bytes: int = 4 * 1024 * 1024
    # Binary values longer than this are given as BulkDataURI in metadata (PS3.18 F.2.7).
    bulk_data_threshold: int = 1024
    # Parts ingested at once per STOW request, beside the reading of the request body.
    ingest_concurrency: int = 2
    # Files in the staging folder older than this are debris of a crash and removed by the sweeper.
    orphan_grace_seconds: int = 3600
    cors_origins: tuple[str, ...] = ()
    fsync: bool = True

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'index.sqlite').resolve()}"

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "staging"

    @property
    def resolved_tiers(self) -> tuple[TierSettings, ...]:
        if self.tiers:
            return self.tiers
        storage = (self.data_dir / "storage").resolve()
        return (TierSettings(name="local", url=storage.as_uri(), role="local"),)

    @property
    def resolved_write_tier(self) -> str:
        names = [t.name for t in self.resolved_tiers]
        if self.write_tier is None:
            return names[0]
        if self.write_tier not in names:
            raise SettingsError(f"write_tier {self.write_tier!r} is not one of the tiers {names}")
        return self.write_tier


def _tier_from_mapping(raw: dict[str, Any]) -> TierSettings:
    try:
        return TierSettings(
            name=str(raw["name"]),
            url=str(raw["url"]),
            role=raw.get("role", "local"),
            options=dict(raw.get("options", {})),
            capacity_bytes=raw.get("capacity_bytes"),
        )
    except KeyError as missing:
        raise SettingsError(f"a [[tiers]] entry lacks {missing}") from None


def _coerce(name: str, value: Any) -> Any:
    """Turn TOML or environment values into the field's type."""
    if name == "data_dir":
        return Path(value)
    if name == "tiers":
        return tuple(_tier_from_mapping(t) for t in value)
    if name == "cors_origins":
        if isinstance(value, str):
            return tuple(o.strip() for o in value.split(",") if o.strip())
        return tuple(value)
    if name in {"spool_memory_bytes", "bulk_data_threshold", "ingest_concurrency", "orphan_grace_seconds"}:
        try:
            return int(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{name} must be an integer, not {value!r}") from None
    if name == "fsync" and isinstance(value, str):
        return value.strip().lower() not in {"0", "false", "no", "off"}
    if name == "on_conflict" and value not in ("reject", "replace"):
        raise SettingsError(f"on_conflict must be 'reject' or 'replace', not {value!r}")
    return value


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings: defaults, then the TOML file, then the environment, then ``overrides``."""
    known = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}

    path = config_file or (Path(os.environ["DICOMWEB_CONFIG"]) if os.environ.get("DICOMWEB_CONFIG") else None)
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SettingsError(f"cannot read the configuration file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"the configuration file {path} is not valid TOML: {exc}") from None
        unknown = set(raw) - known
        if unknown:
            raise SettingsError(f"unknown settings in {path}: {', '.join(sorted(unknown))}")
        values.update(raw)

    for name in known - {"tiers"}:
        env = os.environ.get(f"DICOMWEB_{name.upper()}")
        if env is not None:
            values[name] = env

    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = replace(Settings(), **{k: _coerce(k, v) for k, v in values.items()})
    if not settings.base_path.startswith("/") or settings.base_path.endswith("/"):
        raise SettingsError(f"base_path must start with '/' and not end with one: {settings.base_path!r}")
    settings.resolved_write_tier  # noqa: B018 - validates the tier name early
    return settings
