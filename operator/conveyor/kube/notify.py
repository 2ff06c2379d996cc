"""The one place Conveyor talks to the outside world: POSTing a notification to a webhook.

The URL is a credential (Slack's and Teams' webhook URLs carry their token in the path). It is
handed in per call and never logged, raised or stored: aiohttp puts the URL in its exceptions' text
and in `request_info`, so every failure is turned here into a fixed word (Timeout, ConnectFailed,
TLSFailed, RequestFailed) and nothing else about it leaves this module.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp

from conveyor import __version__
from conveyor.core.notifications import allowed, host_port, private_address

# A webhook answers in well under a second; a slow one must not hold a channel (or a leadership
# handover: a send begun under a valid lease ends before a standby may lead) for long.
CONNECT_SECONDS = 3.0
TOTAL_SECONDS = 5.0
USER_AGENT = f"conveyor/{__version__}"


@dataclass(frozen=True)
class Answer:
    """What came back: an HTTP status, or a fixed word saying why none did."""

    code: int | None
    error: str | None = None
    retry_after: str | None = None
    seconds: float = 0.0

    @property
    def words(self) -> str:
        """For conditions and logs: "HTTP 503" or the error word. Never the URL."""
        return f"HTTP {self.code}" if self.code is not None else self.error or "RequestFailed"


class Sender:
    """POSTs JSON bodies; one connection pool for every channel. Refuses (HostNotAllowed) a name
    that resolves to a private or loopback address unless the operator was told it may."""

    def __init__(self, allowed_hosts: Iterable[str] = ()) -> None:
        self.allowed_hosts = tuple(allowed_hosts)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=TOTAL_SECONDS, connect=CONNECT_SECONDS),
                connector=aiohttp.TCPConnector(ssl=ssl.create_default_context(), limit=32),
                headers={"User-Agent": USER_AGENT},
            )
        return self._session

    async def resolves_private(self, url: str) -> bool:
        """True when the URL's host (not listed as allowed) resolves to a private, loopback or
        link-local address — a name pointing into the cluster's own network. Lookup failures are not
        judged here (the POST then fails with ConnectFailed)."""
        host, hostport = host_port(url)
        if allowed(host, hostport, self.allowed_hosts):
            return False
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError, ValueError):  # no such name, or not one IDNA can encode
            return False
        return any(private_address(str(info[4][0])) for info in infos)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        """POST `body`; redirects are not followed (a 3xx is an answer, and a refusal)."""
        started = time.monotonic()
        try:
            async with self._client().post(
                url,
                data=body,
                headers={"Content-Type": "application/json", **headers},
                allow_redirects=False,
            ) as response:
                await response.read()
                return Answer(
                    code=response.status,
                    retry_after=response.headers.get("Retry-After"),
                    seconds=time.monotonic() - started,
                )
        except TimeoutError:
            word = "Timeout"
        except aiohttp.ClientConnectorCertificateError:
            word = "TLSFailed"
        except aiohttp.ClientSSLError:
            word = "TLSFailed"
        except aiohttp.ClientConnectorError:
            word = "ConnectFailed"
        except aiohttp.InvalidURL:
            word = "InvalidURL"
        except (aiohttp.ClientError, ValueError, OSError):
            word = "RequestFailed"
        # The exception is dropped on purpose: its text and traceback carry the URL.
        return Answer(code=None, error=word, seconds=time.monotonic() - started)

    async def close(self) -> None:
        """Close the connection pool (operator shutdown)."""
        if self._session is not None:
            await self._session.close()
