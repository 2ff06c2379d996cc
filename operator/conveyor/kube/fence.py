"""The write fence: every write Conveyor makes asks it first (one call before each write in
kube/client.py), and it refuses unless this process leads with a lease valid beyond the safety
margin — so an old leader that was paused or cut off writes nothing once it may have lost the lease.

A leadership *term* is counted too: a reconcile pass binds its thread to the term it started in, and
a pass begun in an earlier term is refused even if this process leads again by the time it writes
(it decided on a world another leader may have changed since).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from conveyor.core.leader import Timings, may_write


class NotLeader(Exception):
    """Raised before a write when this process may not write (not leading, or the lease is about to
    be lost, or the write belongs to an earlier term)."""


class Fence:
    """Leadership as the writers see it: set by the elector, checked before every write."""

    def __init__(self, timings: Timings, clock: Callable[[], float] = time.monotonic) -> None:
        self.timings = timings
        self._clock = clock
        self._renewed_at: float | None = None
        self._term = 0
        self._local = threading.local()

    @property
    def term(self) -> int:
        """The current leadership term (increases each time this process starts leading)."""
        return self._term

    def leading(self) -> bool:
        """True while writes are allowed."""
        return may_write(self._renewed_at, self._clock(), self.timings)

    def started(self, renewed_at: float) -> None:
        """This process just acquired the lease (a request sent at `renewed_at`): a new term."""
        self._term += 1
        self._renewed_at = renewed_at

    def renewed(self, renewed_at: float) -> None:
        """The lease was renewed by a request sent at `renewed_at`."""
        self._renewed_at = renewed_at

    def revoke(self) -> None:
        """Stop writing now (lease lost, released, or about to be)."""
        self._renewed_at = None

    def bind(self, term: int | None = None) -> None:
        """Tie the calling thread's following writes to the current term (a pass calls it first), or
        to `term`: the term a longer piece of work began in (the notifier's pass)."""
        self._local.term = self._term if term is None else term

    def check(self, what: str = "write") -> None:
        """Raise NotLeader unless this process may write now (and, on a bound thread, in its term)."""
        if not self.leading():
            raise NotLeader(f"not the leader (or the lease is about to expire): refusing to {what}")
        bound = getattr(self._local, "term", None)
        if bound is not None and bound != self._term:
            raise NotLeader(f"a pass of leadership term {bound} (now {self._term}): refusing to {what}")


class Unfenced(Fence):
    """No leader election (`--no-leader-election`, the kubectl plugin): every write is allowed."""

    def __init__(self) -> None:
        super().__init__(Timings())

    def leading(self) -> bool:
        """Always: nobody else is supposed to run."""
        return True

    def check(self, what: str = "write") -> None:
        """Never refuses."""
