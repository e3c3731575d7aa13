"""frozen_for_fork: children inherit frozen objects, the parent's collector is unchanged."""

from __future__ import annotations

import gc
import os

from minerflow.forking import frozen_for_fork


def test_children_see_the_parent_frozen_and_the_parent_is_restored() -> None:
    gc.unfreeze()
    kept = [[i] for i in range(1000)]  # objects alive at the fork
    read, write = os.pipe()
    with frozen_for_fork():
        pid = os.fork()
        if pid == 0:  # the child: what it inherited stays frozen there
            os.write(write, str(gc.get_freeze_count()).encode())
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    in_child = int(os.read(read, 64))
    os.close(read)
    assert in_child >= len(kept)
    assert gc.get_freeze_count() == 0  # this process collects as before


def test_the_parent_is_restored_when_the_block_fails() -> None:
    gc.unfreeze()
    try:
        with frozen_for_fork():
            assert gc.get_freeze_count() > 0
            raise RuntimeError("fork failed")
    except RuntimeError:
        pass
    assert gc.get_freeze_count() == 0
