"""`make soak`: the long versions of the fault drills. Tests ask here how big to make a run, so one
switch (CONVEYOR_SOAK=1) turns every drill from its bounded `make test` size to its soak size."""

from __future__ import annotations

import os


def soaking() -> bool:
    """True under `make soak` (CONVEYOR_SOAK set and not 0/false/no)."""
    return os.environ.get("CONVEYOR_SOAK", "").strip().lower() not in ("", "0", "false", "no")


def scaled(normal: int | float, soak: int | float) -> int | float:
    """`normal` in `make test`, `soak` under `make soak`."""
    return soak if soaking() else normal
