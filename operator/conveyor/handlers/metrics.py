"""Prometheus metrics on the operator's metrics port (the full set arrives with the metrics work)."""

from __future__ import annotations

from prometheus_client import Gauge, start_http_server

IN_PARITY = Gauge(
    "conveyor_pipeline_in_parity",
    "1 when every stage of the pipeline has the same shape (staging is production's twin), else 0.",
    ["namespace", "pipeline"],
)
PARITY_DIFFERENCES = Gauge(
    "conveyor_pipeline_parity_differences",
    "Number of differences between the pipeline's stages.",
    ["namespace", "pipeline"],
)


def serve(port: int) -> None:
    """Serve /metrics on all interfaces (0: do not serve)."""
    if port:
        start_http_server(port)
