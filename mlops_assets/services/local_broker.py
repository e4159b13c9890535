"""The embedded Kafka-protocol broker for local runs and tests (noida-db, see STACK.md).

`LocalBroker(data_dir, port).start()` runs the broker as a background process whose pid is
kept in `data_dir/broker.pid`, so another command (`mlops-assets broker stop`) can stop it;
messages survive a restart. Production uses an Apache Kafka cluster instead.
"""
import time
from pathlib import Path

import noida_db
from kafka.errors import KafkaError

from mlops_assets.resources.kafka import KafkaResource
from mlops_assets.services.processes import BackgroundProcess

BINARY = Path(noida_db.__file__).parent / "noida-db"


class BrokerError(RuntimeError):
    """The local broker could not be started or stopped; the message says why."""


class LocalBroker:
    def __init__(self, data_dir: Path, port: int = 9092, host: str = "127.0.0.1"):
        self.data_dir = Path(data_dir)
        self.port = port
        self.host = host
        self.process = BackgroundProcess(
            "broker",
            [str(BINARY), "start", "--only", "kafka", "--host", host, "--kafka-port", str(port),
             "--data-dir", str(self.data_dir)],
            self.data_dir,
        )

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def running_pid(self) -> int | None:
        return self.process.running_pid()

    def start(self, timeout_s: float = 30) -> None:
        """Starts the broker unless it already runs, and waits until it answers."""
        self.process.start()
        self._wait_ready(timeout_s)

    def stop(self) -> bool:
        """Stops the broker; returns False if it was not running."""
        return self.process.stop()

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
                        f"({error}); see {self.process.log_file}"
                    ) from error
                time.sleep(0.1)
