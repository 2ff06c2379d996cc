"""The one place Conveyor talks to the outside world: POSTing a notification to a webhook.

The URL is a credential (Slack's and Teams' webhook URLs carry their token in the path). It is
handed in per call and never logged, raised or stored: aiohttp puts the URL in its exceptions' text
and in `request_info`, so every failure is turned here into a fixed word (Timeout, ConnectFailed,
TLSFailed, RequestFailed) and nothing else about it leaves this module.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from conveyor import __version__
from conveyor.core.notifications import allowed, private_address

# A webhook answers in well under a second, but a Teams Workflow can take several: a timeout is
# ambiguous (the message may have arrived), and each retry after one may be a duplicate (with the
# same id), so the bound is generous — it holds only its own channel. (A send
# that outlives a lost lease — a paused process — may be repeated by the next leader, with the same
# idempotency key: the window docs/notifications.md names.)
CONNECT_SECONDS = 5.0
TOTAL_SECONDS = 20.0
BODY_LIMIT = 64 * 1024
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


class PrivateAddress(OSError):
    """The name resolved only to addresses a channel may not reach."""


class _PublicOnly(AbstractResolver):
    """DNS answers with private, loopback and link-local addresses removed (unless the host is
    allowed): judged where aiohttp connects, so the address judged is the address used — no
    rebinding between a check and the connection, no second parser reading the name differently.
    (IP literals never reach a resolver: core.notifications.check_url judges those.)"""

    def __init__(self, allowed_hosts: tuple[str, ...]) -> None:
        self._inner = ThreadedResolver()
        self._allowed = allowed_hosts

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if allowed(host.lower().rstrip("."), f"{host.lower().rstrip('.')}:{port}", self._allowed):
            return found
        public = [r for r in found if not private_address(str(r["host"]))]
        if not public:
            raise PrivateAddress("resolves to a private or loopback address")
        return public

    async def close(self) -> None:
        await self._inner.close()


class Sender:
    """POSTs JSON bodies; one connection pool for every channel, uncapped (a channel has one request
    in flight at most: a black-holed receiver never takes a slot another channel waits for). A name that
    resolves only to private or loopback addresses is refused at connect time (HostNotAllowed)
    unless the operator was told it may be reached."""

    def __init__(self, allowed_hosts: Iterable[str] = ()) -> None:
        self.allowed_hosts = tuple(allowed_hosts)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=TOTAL_SECONDS, connect=CONNECT_SECONDS),
                connector=aiohttp.TCPConnector(
                    ssl=ssl.create_default_context(),
                    # No cap: each channel has one request in flight at most, and one host that hangs
                    # must not take connection slots another channel waits for.
                    limit=0,
                    limit_per_host=0,
                    resolver=_PublicOnly(self.allowed_hosts),
                ),
                headers={"User-Agent": USER_AGENT},
            )
        return self._session

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
                # The status is the answer. A little of the body is read so the connection can be
                # reused; a receiver streaming gigabytes gets its connection closed, not our memory.
                await response.content.read(BODY_LIMIT)
                if not response.content.at_eof():
                    response.close()
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
        except aiohttp.ClientConnectorError as e:
            word = "HostNotAllowed" if isinstance(e.os_error, PrivateAddress) else "ConnectFailed"
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
