"""Wait on the API server with a watch and a deadline, and say what was awaited on timeout."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException


class WaitTimeout(AssertionError):
    """Raised when a condition was not met before its deadline."""


def wait_for_object(
    list_fn: Callable[..., Any],
    name: str,
    predicate: Callable[[Any], bool],
    *,
    what: str,
    timeout: float = 60.0,
    namespace: str | None = None,
    **list_kwargs: Any,
) -> Any:
    """Wait until the object `name` (listed by `list_fn`) satisfies `predicate`.

    Lists once (to see the current state and get a resourceVersion), then watches from there, so
    no change is missed and nothing is polled. `predicate` receives the object, or None when it
    does not exist (so deletion can be awaited too). Raises WaitTimeout naming `what` and showing
    the last state seen.
    """
    deadline = time.monotonic() + timeout
    kwargs = dict(list_kwargs, field_selector=f"metadata.name={name}")
    if namespace is not None:
        kwargs["namespace"] = namespace
    last: Any = None
    while True:
        listing = list_fn(**kwargs)
        items = listing["items"] if isinstance(listing, dict) else listing.items
        last = items[0] if items else None
        if predicate(last):
            return last
        rv = (
            listing["metadata"]["resourceVersion"]
            if isinstance(listing, dict)
            else listing.metadata.resource_version
        )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        w = watch.Watch()
        try:
            for event in w.stream(
                list_fn, resource_version=rv, timeout_seconds=max(1, int(remaining) + 1), **kwargs
            ):
                obj = event["object"]
                last = None if event["type"] == "DELETED" else obj
                if predicate(last):
                    w.stop()
                    return last
                if time.monotonic() > deadline:
                    break
        except ApiException as e:
            if e.status != 410:  # 410 Gone: our resourceVersion expired; list again
                raise
        finally:
            w.stop()
        if time.monotonic() > deadline:
            break
    raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {_brief(last)}")


def wait_for_list(
    list_fn: Callable[..., Any],
    predicate: Callable[[list[Any]], bool],
    *,
    what: str,
    timeout: float = 60.0,
    **list_kwargs: Any,
) -> list[Any]:
    """Wait until the listed items (re-listed after each watch event) satisfy `predicate`."""
    deadline = time.monotonic() + timeout
    items: list[Any] = []
    while True:
        listing = list_fn(**list_kwargs)
        items = listing["items"] if isinstance(listing, dict) else listing.items
        if predicate(items):
            return items
        rv = (
            listing["metadata"]["resourceVersion"]
            if isinstance(listing, dict)
            else listing.metadata.resource_version
        )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}; saw {len(items)} items")
        w = watch.Watch()
        try:
            # Any change is a reason to list again; the first event is enough.
            for _ in w.stream(
                list_fn, resource_version=rv, timeout_seconds=max(1, int(remaining) + 1), **list_kwargs
            ):
                break
        except ApiException as e:
            if e.status != 410:
                raise
        finally:
            w.stop()


def _brief(obj: Any) -> str:
    if obj is None:
        return "<absent>"
    status = obj.get("status") if isinstance(obj, dict) else getattr(obj, "status", None)
    return repr(status)[:2000]


def condition(obj: Any, ctype: str) -> Any:
    """The condition of type `ctype` from a typed client object or a dict, or None."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        for c in (obj.get("status") or {}).get("conditions") or []:
            if c.get("type") == ctype:
                return c
        return None
    for c in (obj.status.conditions or []) if obj.status else []:
        if c.type == ctype:
            return c
    return None


def has_condition(ctype: str, status: str = "True", reason: str | None = None) -> Callable[[Any], bool]:
    """A predicate: the object carries condition `ctype` with `status` (and `reason`, if given)."""

    def check(obj: Any) -> bool:
        c = condition(obj, ctype)
        if c is None:
            return False
        c_status = c.get("status") if isinstance(c, dict) else c.status
        c_reason = c.get("reason") if isinstance(c, dict) else c.reason
        return c_status == status and (reason is None or c_reason == reason)

    return check
