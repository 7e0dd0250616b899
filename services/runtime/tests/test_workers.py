"""The draining worker's SIGTERM handler, re-entered as a repeated SIGTERM re-enters it."""

from __future__ import annotations

import logging

import pytest
from gunicorn.config import Config

from services.runtime import lifecycle
from services.runtime.workers import DrainingThreadWorker


class ReenteringFlag:
    """Stands in for the draining flag and delivers a second SIGTERM while it is being set --
    the moment at which a lock-taking flag (threading.Event) deadlocked the worker."""

    def __init__(self, worker: DrainingThreadWorker) -> None:
        self.worker = worker
        self.sets = 0

    def set(self) -> None:
        self.sets += 1
        if self.sets == 1:
            self.worker.handle_exit(15, None)

    def is_set(self) -> bool:
        return self.sets > 0


@pytest.fixture
def worker(monkeypatch):
    worker = DrainingThreadWorker(1, 0, [], None, 30, Config(), logging.getLogger("test"))
    flag = ReenteringFlag(worker)
    monkeypatch.setattr(lifecycle, "draining", flag)
    return worker, flag


def test_a_repeated_sigterm_inside_the_handler_returns_at_once(worker):
    worker, flag = worker
    worker.handle_exit(15, None)
    assert flag.sets == 1  # the nested SIGTERM did not try to set the flag again
    assert worker.cfg.keepalive == 0
    worker.handle_exit(15, None)  # and later ones change nothing
    assert flag.sets == 1


def test_the_draining_flag_takes_no_lock():
    flag = lifecycle.Flag()
    assert not flag.is_set()
    flag.set()
    assert flag.is_set()
    assert not any(hasattr(flag, name) for name in ("_cond", "_lock"))
