"""A SCRAM-terminating Kafka-protocol proxy in front of the embedded broker.

Tansu 0.6, the embedded broker, cannot hold a SCRAM user (docs/operations.md, "Kafka security"),
so the SASL/SCRAM login a Kafka broker performs is performed here, by the server side of
`scramp`, and the connection is then handed to the real broker behind. Tansu listens on an
internal port and advertises the proxy's, so every connection a client opens (bootstrap,
partition leaders, the group coordinator) goes through a login.

What the proxy does, as a Kafka broker does (KIP-43, KIP-152), per connection:

- ApiVersions (key 18) v0-v2 before the login: forwarded to the broker; its answer goes back with
  the ApiVersions, SaslHandshake and SaslAuthenticate ranges replaced by the ones handled here. A
  newer ApiVersions is answered UNSUPPORTED_VERSION with the range handled (v0-v2), as Kafka
  answers a version it does not know; the client retries with that. aiokafka 0.14 sends v0.
- SaslHandshake (key 17) v0/v1: SCRAM-SHA-256 and SCRAM-SHA-512 are offered; another mechanism is
  answered UNSUPPORTED_SASL_MECHANISM and the connection closed.
- After a v1 handshake, SaslAuthenticate (key 36) v0/v1 carries the SCRAM messages (aiokafka 0.14
  uses the highest of v0/v1 the broker offers, so v1). A failed login is answered
  SASL_AUTHENTICATION_FAILED (58) with Kafka's message, for an unknown user as for a wrong
  password, and the connection is closed.
- After a v0 handshake (the legacy path, which aiokafka takes when the broker offers SaslHandshake
  v0 only: `legacy_handshake_only=True`), the SCRAM messages are bare frames (a size, no request
  header); a failed login closes the connection without an answer, as Kafka does.
- Any other request before a successful login closes the connection; it is recorded in
  `refusals`. Every login, successful or not, is recorded in `logins`.
- After the login, bytes are copied both ways unchanged. The session lifetime announced is 0 (no
  re-authentication, KIP-368), and TLS is not offered (SASL_PLAINTEXT only).

It runs its own event loop in a thread, so it serves clients of the test's loop as well as the
processes of a stack that a synchronous `Stack.start()` waits for.

One module past 400 lines on purpose: one protocol proxy, the SASL exchange and the forwarding.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

from aiokafka.errors import (
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
    UnsupportedVersionError,
)
from aiokafka.protocol.admin import (
    ApiVersionResponse_v0,
    ApiVersionResponse_v1,
    ApiVersionResponse_v2,
    SaslAuthenticateRequest_v0,
    SaslAuthenticateRequest_v1,
    SaslAuthenticateResponse_v0,
    SaslAuthenticateResponse_v1,
    SaslHandShakeRequest_v0,
    SaslHandShakeRequest_v1,
    SaslHandShakeResponse_v0,
    SaslHandShakeResponse_v1,
)
from aiokafka.protocol.api import ResponseHeader_v0
from aiokafka.protocol.types import Int16, Int32, String
from scramp import ScramException, ScramMechanism

from sagaline.lab.launchers.embedded_broker import EmbeddedBroker
from sagaline.lab.ports import free_port

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
ITERATIONS = 4096  # Kafka's default for SCRAM credentials
MAX_UNAUTHENTICATED_FRAME = 512 * 1024  # Kafka's sasl.server.max.receive.size
FAILED = (
    "Authentication failed during authentication due to invalid credentials with SASL mechanism"
)

_API_VERSIONS_RESPONSES: dict[int, Any] = {
    0: ApiVersionResponse_v0,
    1: ApiVersionResponse_v1,
    2: ApiVersionResponse_v2,
}
_HANDSHAKES: dict[int, tuple[Any, Any]] = {
    0: (SaslHandShakeRequest_v0, SaslHandShakeResponse_v0),
    1: (SaslHandShakeRequest_v1, SaslHandShakeResponse_v1),
}
_AUTHENTICATE_REQUESTS: dict[int, Any] = {
    0: SaslAuthenticateRequest_v0,
    1: SaslAuthenticateRequest_v1,
}


@dataclass(frozen=True)
class Login:
    """One SCRAM exchange: `user` as the client named it (None if it named none)."""

    user: str | None
    mechanism: str
    succeeded: bool
    handshake_version: int
    reason: str = ""


@dataclass(frozen=True)
class Refusal:
    """A request that came before a successful login: the connection was closed."""

    api_key: int
    api_version: int


class _Close(Exception):
    """End this connection (after whatever answer was due)."""


@dataclass(frozen=True)
class _Header:
    api_key: int
    api_version: int
    correlation_id: int


def _parse_header(frame: bytes) -> tuple[_Header, BytesIO]:
    """Request header v1 (api key, version, correlation id, client id); the body follows."""
    data = BytesIO(frame)
    try:
        header = _Header(Int16.decode(data), Int16.decode(data), Int32.decode(data))
        String("utf-8").decode(data)  # client_id
    except (struct.error, ValueError) as exc:
        raise _Close from exc
    return header, data


def _response(correlation_id: int, body: Any) -> bytes:
    payload = ResponseHeader_v0(correlation_id).encode() + body.encode()
    return struct.pack(">i", len(payload)) + payload


def _authenticate_response(version: int, error: int, message: str | None, data: bytes) -> Any:
    if version == 0:
        return SaslAuthenticateResponse_v0(error, message, data)
    return SaslAuthenticateResponse_v1(error, message, data, 0)  # session lifetime: none


def scram_user(client_first: str) -> str | None:
    """The user named in a SCRAM client-first message (`n,,n=user,r=nonce`), unescaped."""
    parts = client_first.split(",", 2)
    for attribute in parts[2].split(",") if len(parts) == 3 else []:
        if attribute.startswith("n="):
            return attribute[2:].replace("=2C", ",").replace("=3D", "=")
    return None


async def _read_frame(reader: asyncio.StreamReader, limit: int | None = None) -> bytes | None:
    """One size-prefixed frame, or None at the end of the stream."""
    try:
        (size,) = struct.unpack(">i", await reader.readexactly(4))
        if size < 0 or (limit is not None and size > limit):
            raise _Close
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        return None


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(64 * 1024):
            writer.write(data)
            await writer.drain()


class ScramProxy:
    """Logs clients in with SCRAM-SHA-256/512 for `users` (name -> password), then relays them
    to the broker on `upstream_port`."""

    def __init__(
        self,
        upstream_port: int,
        users: Mapping[str, str],
        *,
        legacy_handshake_only: bool = False,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.upstream_port = upstream_port
        self.port = 0
        self.legacy_handshake_only = legacy_handshake_only
        # What a Kafka broker stores per user and mechanism: salt, StoredKey, ServerKey, i.
        self._credentials = {
            mechanism: {
                user: ScramMechanism(mechanism).make_auth_info(password, iteration_count=ITERATIONS)
                for user, password in users.items()
            }
            for mechanism in MECHANISMS
        }
        self._lock = threading.Lock()
        self._logins: list[Login] = []
        self._refusals: list[Refusal] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._failure: BaseException | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def handled_versions(self) -> dict[int, tuple[int, int]]:
        """The versions of the requests served before the login, as ApiVersions announces them."""
        versions = {API_VERSIONS: (0, max(_API_VERSIONS_RESPONSES))}
        if self.legacy_handshake_only:
            return versions | {SASL_HANDSHAKE: (0, 0)}
        return versions | {SASL_HANDSHAKE: (0, 1), SASL_AUTHENTICATE: (0, 1)}

    @property
    def logins(self) -> list[Login]:
        with self._lock:
            return list(self._logins)

    @property
    def refusals(self) -> list[Refusal]:
        with self._lock:
            return list(self._refusals)

    def record(self, event: Login | Refusal) -> None:
        with self._lock:
            if isinstance(event, Login):
                self._logins.append(event)
            else:
                self._refusals.append(event)

    def auth_info(self, mechanism: str) -> Any:
        """scramp's credential lookup for one mechanism: None for an unknown user."""
        return self._credentials[mechanism].get

    # -- lifecycle (from any thread) --------------------------------------------------------------

    def start(self, timeout_s: float = 10) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._serve(ready)), name="scram-proxy", daemon=True
        )
        self._thread.start()
        if not ready.wait(timeout_s) or self._failure is not None:
            raise RuntimeError(f"the SCRAM proxy did not start: {self._failure!r}")

    def stop(self, timeout_s: float = 10) -> None:
        if self._thread is None or self._loop is None or self._stopping is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout_s)
        self._thread = None

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        connections: set[asyncio.Task[None]] = set()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            connections.add(task)
            try:
                await _Connection(self, reader, writer).run()
            finally:
                connections.discard(task)

        try:
            server = await asyncio.start_server(accept, self.host, 0)
        except OSError as exc:
            self._failure = exc
            ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for task in list(connections):
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)
            await server.wait_closed()


class _Connection:
    """One client connection: the login, then the relay to the broker."""

    def __init__(
        self, proxy: ScramProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        self.reader = reader
        self.writer = writer
        self.upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.mechanism: str | None = None
        self.handshake_version: int | None = None
        self.scram: Any = None  # scramp's ScramServer once the mechanism is known
        self.user: str | None = None
        self.messages = 0  # SCRAM messages received from the client

    async def run(self) -> None:
        try:
            if await self._login():
                await self._relay()
        except (_Close, ConnectionError, struct.error, ValueError):
            pass  # a malformed request ends the connection, as it does on Kafka
        finally:
            writers = [self.writer] + ([self.upstream[1]] if self.upstream else [])
            for writer in writers:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()

    async def _send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def _login(self) -> bool:
        """Serve requests until the login succeeds (True) or the connection ends (False)."""
        while True:
            frame = await _read_frame(self.reader, MAX_UNAUTHENTICATED_FRAME)
            if frame is None:
                return False
            if self.handshake_version == 0:
                if await self._legacy_token(frame):
                    return True
                continue
            header, body = _parse_header(frame)
            if header.api_key == API_VERSIONS and self.mechanism is None:
                await self._api_versions(header, frame)
            elif header.api_key == SASL_HANDSHAKE and self.mechanism is None:
                await self._handshake(header, body)
            elif header.api_key == SASL_AUTHENTICATE and self.handshake_version == 1:
                if await self._authenticate(header, body):
                    return True
            else:
                self.proxy.record(Refusal(header.api_key, header.api_version))
                return False

    async def _upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.upstream is None:
            try:
                self.upstream = await asyncio.open_connection(
                    self.proxy.host, self.proxy.upstream_port
                )
            except OSError as exc:
                raise _Close from exc
        return self.upstream

    async def _api_versions(self, header: _Header, frame: bytes) -> None:
        if header.api_version not in _API_VERSIONS_RESPONSES:
            unsupported = ApiVersionResponse_v0(
                UnsupportedVersionError.errno, [(API_VERSIONS, 0, 2)]
            )
            await self._send(_response(header.correlation_id, unsupported))
            return
        reader, writer = await self._upstream()
        writer.write(struct.pack(">i", len(frame)) + frame)
        await writer.drain()
        answer = await _read_frame(reader)
        if answer is None:
            raise _Close
        data = BytesIO(answer)
        correlation_id = Int32.decode(data)
        response = _API_VERSIONS_RESPONSES[header.api_version].decode(data)
        fields = {name: response.get_item(name) for name in response.SCHEMA.names}
        ranges = {key: (low, high) for key, low, high in fields["api_versions"]}
        ranges.pop(SASL_AUTHENTICATE, None)
        ranges.update(self.proxy.handled_versions)
        fields["api_versions"] = sorted((key, low, high) for key, (low, high) in ranges.items())
        await self._send(_response(correlation_id, type(response)(**fields)))

    async def _handshake(self, header: _Header, body: BytesIO) -> None:
        if header.api_version not in _HANDSHAKES or (
            header.api_version > 0 and self.proxy.legacy_handshake_only
        ):
            raise _Close
        request_class, response_class = _HANDSHAKES[header.api_version]
        mechanism: str = request_class.decode(body).mechanism
        if mechanism not in MECHANISMS:
            refused = response_class(UnsupportedSaslMechanismError.errno, list(MECHANISMS))
            await self._send(_response(header.correlation_id, refused))
            self.proxy.record(Login(None, mechanism, False, header.api_version, "mechanism"))
            raise _Close
        await self._send(_response(header.correlation_id, response_class(0, list(MECHANISMS))))
        self.mechanism = mechanism
        self.handshake_version = header.api_version
        self.scram = ScramMechanism(mechanism).make_server(self.proxy.auth_info(mechanism))

    def _scram_step(self, token: bytes) -> tuple[bytes, bool]:
        """Feed one client message to the SCRAM server: its answer, and whether it was the last."""
        self.messages += 1
        try:
            message = token.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ScramException("the SCRAM message is not UTF-8") from exc
        if self.messages == 1:
            self.user = scram_user(message)
            self.scram.set_client_first(message)
            return self.scram.get_server_first().encode(), False
        if self.messages == 2:
            self.scram.set_client_final(message)
            return self.scram.get_server_final().encode(), True
        raise ScramException("the SCRAM exchange is over")

    def _record(self, succeeded: bool, reason: str = "") -> None:
        assert self.mechanism is not None and self.handshake_version is not None
        login = Login(self.user, self.mechanism, succeeded, self.handshake_version, reason)
        self.proxy.record(login)

    async def _authenticate(self, header: _Header, body: BytesIO) -> bool:
        if header.api_version not in _AUTHENTICATE_REQUESTS:
            raise _Close
        token = _AUTHENTICATE_REQUESTS[header.api_version].decode(body).sasl_auth_bytes
        try:
            answer, done = self._scram_step(token or b"")
        except ScramException as exc:
            self._record(False, str(exc))
            message = f"{FAILED} {self.mechanism}"
            failed = _authenticate_response(
                header.api_version, SaslAuthenticationFailed.errno, message, b""
            )
            await self._send(_response(header.correlation_id, failed))
            raise _Close from exc
        ok = _authenticate_response(header.api_version, 0, None, answer)
        await self._send(_response(header.correlation_id, ok))
        if done:
            self._record(True)
        return done

    async def _legacy_token(self, token: bytes) -> bool:
        """A SCRAM message after a v0 handshake: a bare frame, answered with a bare frame."""
        try:
            answer, done = self._scram_step(token)
        except ScramException as exc:
            self._record(False, str(exc))
            raise _Close from exc
        await self._send(struct.pack(">i", len(answer)) + answer)
        if done:
            self._record(True)
        return done

    async def _relay(self) -> None:
        reader, writer = await self._upstream()
        tasks = [
            asyncio.create_task(_copy(self.reader, writer)),
            asyncio.create_task(_copy(reader, self.writer)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.contextmanager
def scram_broker(
    users: Mapping[str, str], log_path: Path | None = None, *, legacy_handshake_only: bool = False
) -> Iterator[ScramProxy]:
    """The embedded broker (without authentication of its own) behind a SCRAM proxy that it
    advertises as its address; clients connect to `proxy.bootstrap_servers`."""
    proxy = ScramProxy(free_port(), users, legacy_handshake_only=legacy_handshake_only)
    proxy.start()
    broker = EmbeddedBroker(port=proxy.upstream_port, log_path=log_path, advertised_port=proxy.port)
    try:
        broker.start()
        yield proxy
    finally:
        broker.stop()
        proxy.stop()
