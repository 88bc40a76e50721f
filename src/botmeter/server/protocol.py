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

_BODY = b'{"error": "the request headers took too long to arrive"}'
_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
)


def header_timed_protocol(timeout: float) -> type:
    """uvicorn's httptools protocol (its C parser) with the headers' time limit; h11's when
    httptools is not installed."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools is in the server extra
        return _h11_protocol(timeout)

    class HeaderTimedHttpTools(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            _arm(self, timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            _disarm(self)
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._header_timer is None:
                _arm(self, timeout)

        def on_headers_complete(self) -> None:
            _disarm(self)
            super().on_headers_complete()

    return HeaderTimedHttpTools


def _h11_protocol(timeout: float) -> type:
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimedH11(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            _arm(self, timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            _disarm(self)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.IDLE:  # still waiting for the whole head of a request
                if self._header_timer is None and data:
                    _arm(self, timeout)
            else:
                _disarm(self)

    return HeaderTimedH11


def _arm(protocol: Any, timeout: float) -> None:
    _disarm(protocol)
    protocol._header_timer = protocol.loop.call_later(timeout, _timed_out, protocol)


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
