"""The embedded Kafka-protocol broker for local runs and tests (noida-db, see STACK.md).

`LocalBroker(data_dir, port).start()` runs the broker as a background process whose pid is
kept in `data_dir/broker.pid`, so another command (`mlops-assets broker stop`) can stop it;
messages survive a restart. Production uses an Apache Kafka cluster instead.
"""
import os
import signal
import subprocess
import time
from pathlib import Path

import noida_db
from kafka.errors import KafkaError

from mlops_assets.resources.kafka import KafkaResource

BINARY = Path(noida_db.__file__).parent / "noida-db"


class BrokerError(RuntimeError):
    """The local broker could not be started or stopped; the message says why."""


class LocalBroker:
    def __init__(self, data_dir: Path, port: int = 9092, host: str = "127.0.0.1"):
        self.data_dir = Path(data_dir)
        self.port = port
        self.host = host

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    def running_pid(self) -> int | None:
        """The pid of this data directory's broker if it is running."""
        try:
            pid = int(self.pid_file.read_text())
            os.kill(pid, 0)
            return pid
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None

    def start(self, timeout_s: float = 30) -> None:
        """Starts the broker unless it already runs, and waits until it answers."""
        if self.running_pid() is None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            with (self.data_dir / "broker.log").open("ab") as log:
                process = subprocess.Popen(
                    [str(BINARY), "start", "--only", "kafka", "--host", self.host,
                     "--kafka-port", str(self.port), "--data-dir", str(self.data_dir)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # outlives the command that started it
                )
            self.pid_file.write_text(str(process.pid))
        self._wait_ready(timeout_s)

    def stop(self, timeout_s: float = 10) -> bool:
        """Stops the broker; returns False if it was not running."""
        pid = self.running_pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
            except ChildProcessError:
                pass
            if self.running_pid() is None:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True

    def _wait_ready(self, timeout_s: float) -> None:
        # bootstrap_connected() is no readiness test (STACK.md): a metadata call is.
        kafka = KafkaResource(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=2000)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                admin = kafka.admin()
                admin.list_topics()
                admin.close()
                return
            except KafkaError as error:
                if time.monotonic() > deadline:
                    raise BrokerError(
                        f"the local broker on {self.bootstrap_servers} did not answer within {timeout_s:.0f} s "
                        f"({error}); see {self.data_dir / 'broker.log'}"
                    ) from error
                time.sleep(0.1)
