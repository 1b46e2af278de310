"""A total deadline for an HTTP call, response headers included.

httpx bounds each connect, write and read, not a whole call: an answer trickling one byte
per read, headers first, is never cut. Here the connections of a client are opened through a
network backend whose streams shrink every socket timeout to what is left of the calling
thread's deadline (set with `deadline(seconds)`), and time out once it has passed. httpx maps
these timeouts to its own (`httpx.TimeoutException`), so callers handle them as any other.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx

_DEADLINE: ContextVar[float | None] = ContextVar("http_call_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every socket operation of the HTTP calls made inside ends within `seconds` from now."""
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def deadline_client(base_url: str, timeout: httpx.Timeout, limits: httpx.Limits) -> httpx.Client:
    """An httpx client whose calls honour `deadline()`; outside one it behaves as usual."""
    transport = httpx.HTTPTransport(limits=limits)
    # httpx has no parameter for httpcore's network backend: the transport's pool is rebuilt
    # with the same limits (tests/integration/test_ml_http_live.py pins the behaviour).
    transport._pool = httpcore.ConnectionPool(
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=_DeadlineBackend(),
    )
    return httpx.Client(base_url=base_url, timeout=timeout, transport=transport)


def _left(timeout: float | None, expired: type[Exception]) -> float | None:
    """The socket timeout to use: the operation's own, or less if the deadline is nearer."""
    until = _DEADLINE.get()
    if until is None:
        return timeout
    left = until - time.monotonic()
    if left <= 0:
        raise expired("the call's total deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        tls = self._inner.start_tls(
            ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, _left(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(
            path, _left(timeout, httpcore.ConnectTimeout), socket_options
        )
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)
