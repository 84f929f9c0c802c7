"""Remembering which original each pseudonym stands for, so a researcher's request can be resolved back."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from dicomweb.index.models import utcnow

from .models import UidPseudonym

TABLE: Any = UidPseudonym.__table__  # type: ignore[attr-defined]
CHUNK = 500  # rows or parameters per statement, under every backend's parameter limit


class PseudonymStore:
    """Insert-or-ignore writes in one transaction per batch; a bounded set skips pairs written before."""

    def __init__(self, engine: Engine, cache_size: int = 100_000) -> None:
        self.engine = engine
        self._known: OrderedDict[str, None] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def _unknown(self, pairs: dict[str, str]) -> dict[str, str]:
        with self._lock:
            return {p: o for p, o in pairs.items() if p not in self._known}

    def _mark_known(self, pseudonyms: Iterable[str]) -> None:
        with self._lock:
            for p in pseudonyms:
                self._known[p] = None
                self._known.move_to_end(p)
            while len(self._known) > self._cache_size:
                self._known.popitem(last=False)

    def _insert_ignoring_duplicates(self, rows: list[dict[str, Any]]) -> Any:
        backend = self.engine.dialect.name
        if backend == "sqlite":
            return sqlite.insert(TABLE).values(rows).on_conflict_do_nothing(index_elements=["pseudonym"])
        if backend == "postgresql":
            return postgresql.insert(TABLE).values(rows).on_conflict_do_nothing(index_elements=["pseudonym"])
        return None

    def add(self, pairs: dict[str, str]) -> None:
        """Record pseudonym -> original pairs (an existing pseudonym is left as it is)."""
        todo = self._unknown(pairs)
        if not todo:
            return
        now = utcnow()
        rows = [{"pseudonym": p, "original": o, "created_at": now} for p, o in sorted(todo.items())]
        with self.engine.begin() as conn:
            for start in range(0, len(rows), CHUNK):
                chunk = rows[start:start + CHUNK]
                statement = self._insert_ignoring_duplicates(chunk)
                if statement is not None:
                    conn.execute(statement)
                    continue
                for row in chunk:  # other backends: one savepoint per row
                    try:
                        with conn.begin_nested():
                            conn.execute(insert(TABLE).values(row))
                    except IntegrityError:
                        pass
        self._mark_known(todo)

    def originals(self, pseudonyms: Iterable[str]) -> dict[str, str]:
        wanted = sorted(set(pseudonyms))
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start:start + CHUNK]
                query = select(TABLE.c.pseudonym, TABLE.c.original).where(TABLE.c.pseudonym.in_(chunk))
                found.update({row.pseudonym: row.original for row in conn.execute(query)})
        return found
