"""Background chores of a worker (probes, DNS, file watches), each in its own daemon thread."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


def every(seconds: float, action: Callable[[], object], name: str) -> threading.Thread:
    """Run ``action`` every ``seconds``; a failure is logged and the chore goes on."""

    def loop() -> None:
        while True:
            time.sleep(seconds)
            try:
                action()
            except Exception:  # noqa: BLE001  (a chore must outlive any one bad round)
                log.exception("background chore %s failed", name)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread
