"""Every API call is bounded: an API server that accepts the connection and never answers costs a
pass a timeout (and a retry), never a reconcile thread for ever."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from kubernetes import client

from conveyor.kube import client as kube_client
from conveyor.kube.client import Kube


def test_a_silent_api_server_times_out_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:  # accept and read, never answer
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(conn)
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    cfg = client.Configuration()
    cfg.host = f"http://127.0.0.1:{server.getsockname()[1]}"
    cfg.retries = False
    monkeypatch.setattr(kube_client, "REQUEST_TIMEOUT", (1.0, 1.0))
    kube = Kube(client.ApiClient(cfg))
    started = time.monotonic()
    try:
        with pytest.raises(Exception, match=r"(?i)timed? ?out"):
            kube.get_custom("pipelines", "apps", "shop")
        assert time.monotonic() - started < 10, "the call waited far past its timeout"
        assert accepted, "the call never reached the silent server"
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()
