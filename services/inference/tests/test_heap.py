"""The heap policy: survivors are frozen out of collections, and what is dropped is still freed."""

import gc
import weakref

from services.inference import heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector can free it


def test_settle_freezes_survivors_and_frees_dropped_cycles():
    try:
        kept, dropped = Node(), Node()
        gone = weakref.ref(dropped)
        heap.settle()
        assert gc.get_freeze_count() > 0
        del dropped  # e.g. an unloaded model version, frozen while it served
        gc.collect()
        assert gone() is not None, "frozen objects are skipped by collections"
        heap.settle()
        assert gone() is None, "settle() must free what was frozen and is now garbage"
        assert kept.me is kept
    finally:
        gc.unfreeze()
