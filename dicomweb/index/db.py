"""Engine creation and schema migration for the index."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlmodel import create_engine

MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; NORMAL sync in WAL mode survives a process crash (SIGKILL),
    # which is what an acknowledged store must survive; busy_timeout makes concurrent writers wait.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg"))
    # JIT compilation pays off for long analytic scans; for the index's short queries its compile time
    # (hundreds of ms once a plan's estimated cost passes jit_above_cost) dwarfs the query itself.
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True,
                         connect_args={"options": "-c jit=off"})


def reading(engine: Engine) -> Connection:
    """A connection for read-only statements that run often (searches, access decisions).

    On PostgreSQL it runs in autocommit (each statement its own snapshot, exactly as a one-statement
    transaction): psycopg prepares a statement run five times on a connection and PostgreSQL then reuses
    its plan, but a ROLLBACK (what the pool does to a connection in a transaction when it comes back)
    discards every prepared statement, so without autocommit each search is planned afresh; planning a
    statement with policy subqueries costs more than running it.
    """
    conn = engine.connect()
    if engine.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
    return conn


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision of every branch (idempotent; safe at every start).

    Features add their tables as branches off the first revision, so they can land in any order.
    """
    command.upgrade(alembic_config(engine), "heads")
