"""Kubernetes API request metrics, recorded where the requests are made."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter, Histogram

API_REQUESTS = Counter(
    "conveyor_api_requests_total", "Kubernetes API requests by verb, kind and code.", ["verb", "kind", "code"]
)
API_LATENCY = Histogram(
    "conveyor_api_request_duration_seconds",
    "Kubernetes API request latency.",
    ["verb", "kind"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

F = TypeVar("F", bound=Callable[..., Any])


def instrumented(verb: str, kind: str | None = None) -> Callable[[F], F]:
    """Count and time a Kube method; `kind` defaults to the method's first argument (a plural)."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            what = kind or (str(args[0]) if args else "?")
            start = time.monotonic()
            code = "200"
            try:
                return fn(self, *args, **kwargs)
            except ApiException as e:
                code = str(e.status)
                raise
            except Exception:
                code = "error"
                raise
            finally:
                API_REQUESTS.labels(verb, what, code).inc()
                API_LATENCY.labels(verb, what).observe(time.monotonic() - start)

        return call  # type: ignore[return-value]

    return wrap
