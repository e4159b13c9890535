"""Kafka: connection settings shared by every client, and the platform's topics.

Locally the bootstrap servers point at the embedded broker (`mlops-assets broker start`);
in production `KAFKA_BOOTSTRAP_SERVERS` names an Apache Kafka cluster and the security
settings (SASL/SSL) come from the environment. Code relies only on standard Kafka semantics.
"""
import os

from dagster import ConfigurableResource
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import TopicAlreadyExistsError
from pydantic import Field

from mlops_assets.contracts import FRAUD_LABELS, TRANSACTIONS

TRANSACTIONS_TOPIC = TRANSACTIONS.topic
FRAUD_LABELS_TOPIC = FRAUD_LABELS.topic
FRAUD_SCORES_TOPIC = "fraud_scores"
DEAD_LETTER_TOPIC = "transactions.dlq"
TOPICS = (TRANSACTIONS_TOPIC, FRAUD_LABELS_TOPIC, FRAUD_SCORES_TOPIC, DEAD_LETTER_TOPIC)

LOCAL_BOOTSTRAP_SERVERS = "127.0.0.1:9092"


class KafkaResource(ConfigurableResource):
    """Connection to the Kafka cluster; every client the platform makes takes its settings."""

    bootstrap_servers: str = Field(default=LOCAL_BOOTSTRAP_SERVERS, description="host:port[,host:port...]")
    security_protocol: str = Field(default="PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.")
    sasl_mechanism: str | None = Field(default=None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.")
    sasl_username: str | None = Field(default=None, description="SASL user name.")
    sasl_password: str | None = Field(default=None, description="SASL password.")
    ssl_cafile: str | None = Field(default=None, description="CA certificate file for SSL.")
    partitions: int = Field(default=3, description="Partitions of each topic the platform creates.")
    replication_factor: int = Field(default=1, description="Replicas of each topic the platform creates.")
    request_timeout_ms: int = Field(default=10_000, description="How long a client waits for the cluster.")

    @classmethod
    def from_env(cls) -> "KafkaResource":
        """Settings from KAFKA_* environment variables, for services that run outside Dagster."""
        env = os.environ
        return cls(
            bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS", LOCAL_BOOTSTRAP_SERVERS),
            security_protocol=env.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
            sasl_mechanism=env.get("KAFKA_SASL_MECHANISM"),
            sasl_username=env.get("KAFKA_SASL_USERNAME"),
            sasl_password=env.get("KAFKA_SASL_PASSWORD"),
            ssl_cafile=env.get("KAFKA_SSL_CAFILE"),
            partitions=int(env.get("KAFKA_TOPIC_PARTITIONS", "3")),
            replication_factor=int(env.get("KAFKA_REPLICATION_FACTOR", "1")),
        )

    def client_config(self) -> dict:
        """Connection and security settings common to producers, consumers and admin clients."""
        config = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        optional = {
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": self.sasl_username,
            "sasl_plain_password": self.sasl_password,
            "ssl_cafile": self.ssl_cafile,
        }
        config.update({key: value for key, value in optional.items() if value is not None})
        return config

    def producer(self, **overrides) -> KafkaProducer:
        """A producer that waits for all in-sync replicas (acks=all) unless told otherwise."""
        return KafkaProducer(**{**self.client_config(), "acks": "all", **overrides})

    def consumer(self, *topics: str, **overrides) -> KafkaConsumer:
        return KafkaConsumer(*topics, **{**self.client_config(), **overrides})

    def admin(self) -> KafkaAdminClient:
        return KafkaAdminClient(**self.client_config())

    def ensure_topics(self) -> list[str]:
        """Creates the platform's topics that do not exist yet; returns the ones created."""
        admin = self.admin()
        try:
            missing = [topic for topic in TOPICS if topic not in set(admin.list_topics())]
            if missing:
                try:
                    admin.create_topics(
                        {topic: {"num_partitions": self.partitions, "replication_factor": self.replication_factor} for topic in missing}
                    )
                except TopicAlreadyExistsError:
                    pass  # created meanwhile by another client
            return missing
        finally:
            admin.close()
