"""Two writers of the state file at once (``slurm-dispatch drain`` in one process, the service recording a broken
node in another): each change reads the file and writes it back, so without a lock one of them is lost.

The second writer is started while the first is between its read and its write, and the first goes on only once
the second has either finished (no lock: its change is then overwritten) or is seen waiting for the lock in
/proc/locks. No sleep stands for the order.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from plugins.waiting import wait_until

from slurm_dispatch.dispatch.admission import Drain
from slurm_dispatch.service.state import State, StateStore
from slurm_dispatch.slurm.broken_nodes import BrokenNode

DRAIN = Drain(reason="kernel upgrade", since="2026-12-07T13:23:21.719686000Z")
BROKEN = {"c1": BrokenNode(node="c1", since=1000.0, reason="crunch-run reported it broken")}


def waiting_for_lock(path: Path) -> bool:
    """True if /proc/locks shows a process waiting for a lock on ``path`` (a line with ``->``)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    # "1: -> FLOCK  ADVISORY  WRITE <pid> <major>:<minor>:<inode> 0 EOF" (proc(5), /proc/locks; numbers in hex)
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    return any(fields[1:2] == ["->"] and fields[6:7] == [where]
               for fields in (line.split() for line in Path("/proc/locks").read_text().splitlines()))


class DrainThatLetsAnotherWriterIn(StateStore):
    """A StateStore whose first write starts ``other`` (in a thread) and waits until it has finished or is waiting
    for the lock, then writes."""

    def __init__(self, directory: Path, other: threading.Thread, other_done: threading.Event) -> None:
        super().__init__(directory)
        self.other, self.other_done = other, other_done

    def write(self, state: State) -> None:
        if not self.other.is_alive() and not self.other_done.is_set():
            self.other.start()
            wait_until(lambda: self.other_done.is_set() or waiting_for_lock(self.lock_path),
                       what="the other writer to finish or to wait for the lock", every=0.01)
        super().write(state)


def test_a_drain_and_a_broken_node_written_at_once_are_both_kept(tmp_path: Path) -> None:
    done = threading.Event()
    errors: list[Exception] = []

    def record_broken() -> None:
        try:
            StateStore(tmp_path).set_broken(BROKEN)
        except Exception as exc:  # noqa: BLE001 -- a failure in the thread is shown by the assertion below
            errors.append(exc)
        finally:
            done.set()

    other = threading.Thread(target=record_broken, daemon=True)
    DrainThatLetsAnotherWriterIn(tmp_path, other, done).set_drain(DRAIN, by="root@vm")
    other.join(timeout=30)
    assert not other.is_alive() and errors == []
    state = StateStore(tmp_path).read()
    assert (state.drain, state.drained_by, state.broken) == (DRAIN, "root@vm", BROKEN)
