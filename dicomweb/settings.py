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


# Claim paths of a principal's attributes in a bearer token; institutions remap them with [auth_claims].
DEFAULT_CLAIMS: dict[str, str] = {
    "roles": "roles",
    "name": "name",
    "institution": "institution",
    "department": "department",
    "national_id": "national_id",
    "national_id_issuer": "national_id_issuer",
}


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
class LifecycleRule:
    """Move a study from one tier to another once it is ``after_days`` old (since stored or last read).

    ``institution`` names the InstitutionName it applies to; empty: the default for every other institution.
    """

    source: str
    target: str
    after_days: float
    since: Literal["stored", "read"] = "read"
    institution: str = ""


@dataclass(frozen=True)
class DimsePeer:
    """A known DIMSE peer (``[[dimse_peers]]``): where it listens (C-MOVE destination, storage commitment
    replies), what it may do, and the principal its requests act as."""

    ae_title: str
    host: str = "127.0.0.1"
    port: int = 104
    store: bool = True
    query: bool = True
    retrieve: bool = True
    principal: str = ""


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
    # Memory for finished study/series metadata answers (WADO-RS), kept until an instance changes; 0: none.
    metadata_cache_bytes: int = 256 * 1024 * 1024
    # Parts ingested at once per STOW request, beside the reading of the request body.
    ingest_concurrency: int = 2
    # Worker processes that ingest (parse, encode, index, store); 0: in the server's own threads;
    # -1 (default): one per core beyond the first, at most 4, none on a single core.
    ingest_processes: int = -1
    # HTTP server processes (`dicomweb serve --workers`): each a whole server over the same index and tiers,
    # sharing the listening socket, so requests spread over cores (one Python process uses about one).
    http_workers: int = 1
    # Files in the staging folder older than this are debris of a crash and removed by the sweeper.
    orphan_grace_seconds: int = 3600
    cors_origins: tuple[str, ...] = ()
    # QIDO-RS: the most results one search returns (a larger or absent limit is cut, with a Warning), and
    # whether person names match case-insensitively (NFKC case folding, per component group).
    qido_max_results: int = 1000
    qido_pn_case_insensitive: bool = True
    fsync: bool = True
    # Rendered images (issue 5): memory for rendered output (thumbnails also persist under data_dir), the side
    # of the square a thumbnail fits in, and whether annotation=patient may burn patient identity into images.
    render_cache_bytes: int = 64 * 1024 * 1024
    thumbnail_size: int = 128
    render_patient_annotation: bool = True
    # Tiers (issue 9): lifecycle rules ([[lifecycle]] in TOML); a tier past high_water of its capacity_bytes
    # moves its least recently read studies down until it is under low_water.
    lifecycle: tuple[LifecycleRule, ...] = ()
    tier_high_water: float = 0.9
    tier_low_water: float = 0.8
    # Bring a study read from a lower tier back up to this tier (a tier name; empty: never).
    promote_on_read: str = ""
    # Seconds between automatic lifecycle passes in the server (0: only `dicomweb migrate` or the admin API).
    lifecycle_interval_seconds: float = 0
    # Seconds a moved study's source copies stay after the switch, so reads already under way finish.
    migration_drain_seconds: float = 1.0
    # Jobs: a Dramatiq broker URL (redis://... or amqp://...) runs them in `dicomweb worker` processes;
    # empty: in the server's own threads (the embedded default).
    jobs_broker_url: str = ""
    jobs_namespace: str = "dicomweb"
    jobs_max_attempts: int = 5
    jobs_backoff_seconds: float = 2.0
    jobs_max_backoff_seconds: float = 600.0
    # DIMSE gateway (issue 7): listens when dimse_port is set (0: a free port); callers not in dimse_peers are
    # refused at association unless dimse_accept_unknown (then they may echo, store, query and retrieve).
    dimse_port: int | None = None
    dimse_host: str = "127.0.0.1"
    dimse_ae_title: str = "DICOMWEB"
    dimse_peers: tuple[DimsePeer, ...] = ()
    dimse_accept_unknown: bool = True
    dimse_timeout_seconds: float = 60.0
    dimse_max_associations: int = 32
    # When a C-STORE is answered: "received" (default) once the instance is checked (parsed, authorized, not a
    # conflicting duplicate) and durable in the inbox journal, indexing following in the background (a peer's
    # next instance overlaps it; the inbox is replayed after a crash); "indexed" only after the full ingest.
    dimse_store_ack: str = "received"
    # Authorization (issue 6). "on": every request needs a bearer token (401 otherwise); "off": requests act
    # as the system principal (every right) - for a closed lab network or tests, never for patient data.
    auth: Literal["on", "off"] = "on"
    # Tokens of an external OIDC provider: its issuer and JWKS URL; empty: the embedded issuer (keys under
    # data_dir/auth, `dicomweb users add`, `dicomweb token`). The audience every token must name.
    auth_issuer: str = ""
    auth_jwks_url: str = ""
    auth_audience: str = "dicomweb"
    auth_algorithms: tuple[str, ...] = ("RS256", "ES256", "PS256")
    auth_leeway_seconds: int = 30
    auth_token_ttl_seconds: int = 3600
    # Where each principal attribute sits in the token's claims (dotted paths; a list claim for roles).
    auth_claims: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_CLAIMS))
    # X-Forwarded-For is believed only from these proxies (addresses or CIDR networks).
    trusted_proxies: tuple[str, ...] = ()
    # The role rules an institution edits (TOML); empty: the packaged default rules.
    policy_file: str = ""
    # The secret behind pseudonyms and date shifts (anonymized answers); empty: generated once under
    # data_dir/auth and kept. "modified": dates shifted per patient (PS3.15 Retain Longitudinal Temporal
    # Information with Modified Dates); "remove": dates handled as the Basic Profile says.
    deid_secret: str = ""
    deid_dates: Literal["modified", "remove"] = "modified"
    # The audit log: every access recorded (on by default; off only for benchmarks of the bare path).
    audit_enabled: bool = True

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


def _rule_from_mapping(raw: dict[str, Any]) -> LifecycleRule:
    try:
        rule = LifecycleRule(
            source=str(raw["source"]), target=str(raw["target"]), after_days=float(raw.get("after_days", 0)),
            since=raw.get("since", "read"), institution=str(raw.get("institution", "")),
        )
    except KeyError as missing:
        raise SettingsError(f"a [[lifecycle]] rule lacks {missing}") from None
    except (TypeError, ValueError):
        raise SettingsError(f"a [[lifecycle]] rule has a non-numeric after_days: {raw.get('after_days')!r}") from None
    if rule.since not in ("stored", "read"):
        raise SettingsError(f"a [[lifecycle]] rule's since must be 'stored' or 'read', not {rule.since!r}")
    return rule


def _peer_from_mapping(raw: dict[str, Any]) -> DimsePeer:
    try:
        peer = DimsePeer(
            ae_title=str(raw["ae_title"]).strip(), host=str(raw.get("host", "127.0.0.1")),
            port=int(raw.get("port", 104)), store=bool(raw.get("store", True)), query=bool(raw.get("query", True)),
            retrieve=bool(raw.get("retrieve", True)), principal=str(raw.get("principal", "")),
        )
    except KeyError as missing:
        raise SettingsError(f"a [[dimse_peers]] entry lacks {missing}") from None
    except (TypeError, ValueError):
        raise SettingsError(f"a [[dimse_peers]] entry has a non-numeric port: {raw.get('port')!r}") from None
    if not 0 < len(peer.ae_title) <= 16 or not 0 < peer.port < 65536:
        raise SettingsError(f"a [[dimse_peers]] entry needs an AE title of 1-16 characters and a port: {raw!r}")
    return peer


def _coerce(name: str, value: Any) -> Any:
    """Turn TOML or environment values into the field's type."""
    if name == "dimse_peers":
        return tuple(_peer_from_mapping(p) for p in value)
    if name in {"dimse_port", "dimse_max_associations"}:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{name} must be an integer, not {value!r}") from None
        if not 0 <= number < 65536 or (name == "dimse_max_associations" and number < 1):
            raise SettingsError(f"{name} is out of range: {value!r}")
        return number
    if name == "dimse_timeout_seconds":
        try:
            if float(value) <= 0:
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise SettingsError(f"dimse_timeout_seconds must be a positive number, not {value!r}") from None
    if name == "dimse_accept_unknown" and isinstance(value, str):
        return value.strip().lower() not in {"0", "false", "no", "off"}
    if name == "dimse_ae_title" and not 0 < len(str(value).strip()) <= 16:
        raise SettingsError(f"dimse_ae_title must have 1 to 16 characters, not {value!r}")
    if name == "data_dir":
        return Path(value)
    if name in {"auth_algorithms", "trusted_proxies"}:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return tuple(str(v) for v in value)
    if name == "auth" and value not in ("on", "off"):
        raise SettingsError(f"auth must be 'on' or 'off', not {value!r}")
    if name == "deid_dates" and value not in ("modified", "remove"):
        raise SettingsError(f"deid_dates must be 'modified' or 'remove', not {value!r}")
    if name == "auth_claims":
        if not isinstance(value, dict):
            raise SettingsError("auth_claims must be a table of attribute = claim path")
        unknown = set(value) - set(DEFAULT_CLAIMS)
        if unknown:
            raise SettingsError(f"auth_claims names unknown attributes: {', '.join(sorted(unknown))}")
        return {**DEFAULT_CLAIMS, **{k: str(v) for k, v in value.items()}}
    if name in {"auth_leeway_seconds", "auth_token_ttl_seconds"}:
        try:
            if int(value) < 0:
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{name} must be a whole number of seconds, not {value!r}") from None
    if name == "audit_enabled" and isinstance(value, str):
        return value.strip().lower() not in {"0", "false", "no", "off"}
    if name == "tiers":
        return tuple(_tier_from_mapping(t) for t in value)
    if name == "cors_origins":
        if isinstance(value, str):
            return tuple(o.strip() for o in value.split(",") if o.strip())
        return tuple(value)
    if name in {"spool_memory_bytes", "bulk_data_threshold", "metadata_cache_bytes", "ingest_concurrency",
                "ingest_processes", "orphan_grace_seconds", "http_workers"}:
        try:
            return int(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{name} must be an integer, not {value!r}") from None
    if name == "qido_max_results":
        try:
            if int(value) < 1:
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise SettingsError(f"qido_max_results must be a positive integer, not {value!r}") from None
    if name == "qido_pn_case_insensitive" and isinstance(value, str):
        return value.strip().lower() not in {"0", "false", "no", "off"}
    if name == "lifecycle":
        return tuple(_rule_from_mapping(r) for r in value)
    if name in {"tier_high_water", "tier_low_water", "lifecycle_interval_seconds", "migration_drain_seconds",
                "jobs_backoff_seconds", "jobs_max_backoff_seconds", "jobs_max_attempts"}:
        try:
            amount = float(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{name} must be a number, not {value!r}") from None
        if amount < 0:
            raise SettingsError(f"{name} must not be negative, not {value!r}")
        return int(amount) if name == "jobs_max_attempts" else amount
    if name in {"render_cache_bytes", "thumbnail_size"}:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{name} must be an integer, not {value!r}") from None
        if number < (1 if name == "thumbnail_size" else 0) or (name == "thumbnail_size" and number > 1024):
            raise SettingsError(f"{name} is out of range: {value!r}")
        return number
    if name == "render_patient_annotation" and isinstance(value, str):
        return value.strip().lower() not in {"0", "false", "no", "off"}
    if name == "fsync" and isinstance(value, str):
        return value.strip().lower() not in {"0", "false", "no", "off"}
    if name == "dimse_store_ack" and value not in ("received", "indexed"):
        raise SettingsError(f"dimse_store_ack must be 'received' or 'indexed', not {value!r}")
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

    for name in known - {"tiers", "lifecycle", "dimse_peers", "auth_claims"}:
        env = os.environ.get(f"DICOMWEB_{name.upper()}")
        if env is not None:
            values[name] = env

    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = replace(Settings(), **{k: _coerce(k, v) for k, v in values.items()})
    if not settings.base_path.startswith("/") or settings.base_path.endswith("/"):
        raise SettingsError(f"base_path must start with '/' and not end with one: {settings.base_path!r}")
    if settings.http_workers < 1:
        raise SettingsError(f"http_workers must be at least 1, not {settings.http_workers}")
    settings.resolved_write_tier  # noqa: B018 - validates the tier name early
    return settings
