"""What runs beside the server: the job engine, last-read tracking (and promotion), periodic lifecycle."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from ..backends.lifecycle import AccessTracker, check_rules
from . import Jobs

if TYPE_CHECKING:
    from ..archive import Archive

log = logging.getLogger(__name__)


class Background:
    def __init__(self, archive: Archive, *, access_interval: float = 10.0) -> None:
        settings = archive.settings
        check_rules(settings, archive.tiers)
        self.archive = archive
        self.jobs = Jobs(archive)
        self.tracker = AccessTracker(archive.engine, promote_to=settings.promote_on_read, promote=self._promote,
                                     interval=access_interval)
        self._stop = threading.Event()
        self._scheduler: threading.Thread | None = None

    def _promote(self, study: str) -> None:
        target = self.archive.settings.promote_on_read
        self.jobs.submit("migrate_study", {"study": study, "target": target}, f"study:{study}")

    def start(self) -> None:
        self.archive.tiers.on_read = self.tracker
        self.tracker.start()
        self.jobs.start()
        interval = self.archive.settings.lifecycle_interval_seconds
        if interval > 0:
            self._scheduler = threading.Thread(target=self._schedule, args=(interval,), name="dicomweb-lifecycle",
                                               daemon=True)
            self._scheduler.start()

    def _schedule(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.jobs.submit("apply_lifecycle", {}, "lifecycle")
            except Exception:
                log.exception("could not schedule the lifecycle pass")

    def close(self) -> None:
        self._stop.set()
        self.archive.tiers.on_read = None
        self.tracker.stop()
        self.jobs.close()
