"""uvicorn's HTTP/1.1 protocol with a time limit on a request's headers.

uvicorn limits how long a kept-alive connection may idle, and the collector limits how long a
body may take (``read_body``), but nothing limits the headers: a client that opens a connection
and dribbles header bytes (or none) holds a connection slot forever, and a few hundred of them
take every slot (``MAX_CONNECTIONS``). Here the headers of each request must be complete within
``--read-timeout`` seconds of the connection opening or of the request's first byte; slower gets
408 and the connection closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

_BODY = b'{"error": "the request headers took too long to arrive"}'
_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
)


def _timeout() -> float:
    # The settings `botmeter serve` put in the environment, as the app (and each worker) reads them.
    from .settings import ServerConfig

    return ServerConfig.from_environment().read_timeout


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is in the server extra
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


class _HeaderTimed:
    """The headers' time limit over a connection's life, for either of uvicorn's protocols: armed
    when the connection is made, disarmed when it is lost; each protocol arms it again when a
    request's head begins and disarms it once the head is complete."""

    _header_timer: asyncio.TimerHandle | None = None
    header_timeout: float | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        _arm(self)

    def connection_lost(self, exc: Exception | None) -> None:
        _disarm(self)
        super().connection_lost(exc)  # type: ignore[misc]


if HttpToolsProtocol is not None:

    class HeaderTimedHttpTools(_HeaderTimed, HttpToolsProtocol):
        """uvicorn's httptools protocol (its C parser) with the headers' time limit."""

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._header_timer is None:
                _arm(self)

        def on_headers_complete(self) -> None:
            _disarm(self)
            super().on_headers_complete()


class HeaderTimedH11(_HeaderTimed, H11Protocol):
    """uvicorn's h11 protocol with the headers' time limit (when httptools is not installed)."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # still waiting for the whole head of a request
            if self._header_timer is None and data:
                _arm(self)
        else:
            _disarm(self)


# What `botmeter serve` gives uvicorn (an import string: worker processes import it themselves).
PROTOCOL = (
    "botmeter.server.protocol:HeaderTimedHttpTools"
    if HttpToolsProtocol is not None
    else "botmeter.server.protocol:HeaderTimedH11"
)


def _arm(protocol: Any) -> None:
    _disarm(protocol)
    cls = type(protocol)
    if cls.header_timeout is None:
        cls.header_timeout = _timeout()
    protocol._header_timer = protocol.loop.call_later(cls.header_timeout, _timed_out, protocol)


def _disarm(protocol: Any) -> None:
    if protocol._header_timer is not None:
        protocol._header_timer.cancel()
        protocol._header_timer = None


def _timed_out(protocol: Any) -> None:
    protocol._header_timer = None
    transport = protocol.transport
    if transport is not None and not transport.is_closing():
        transport.write(_TIMED_OUT)
        transport.close()
