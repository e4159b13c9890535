"""The transactions of the partitions a scoring instance does not own, in its feature history.

A scoring instance is a consumer-group member: it scores the partitions of `transactions` it
is assigned, and since the topic is keyed by customer it owns whole customers and their
history. Terminal features, though, aggregate every customer's transactions, so each
instance also reads the partitions it does not own, for history only, with a reader of its
own (no group, no commits):

- before each batch is scored, those partitions are read up to their end offsets, so every
  transaction produced before the batch is in history. Reading ahead changes nothing: a
  feature's window ends strictly before its transaction's time.
- a partition the instance is given is first read up to the group's committed offset (where
  its scoring starts; this also covers what arrived after the warehouse the store was
  bootstrapped from), then left to the scoring consumer. A partition taken away is read
  again from where this instance's scoring stopped.

With one instance every partition is its own, so this costs nothing per batch.
"""
import logging
import time
from collections.abc import Callable, Iterable

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener

log = logging.getLogger(__name__)


class StreamHistory(ConsumerRebalanceListener):
    """Feeds `add` every message of the partitions the scoring consumer does not own; give it
    to the scoring consumer's `subscribe(..., listener=...)` and call `catch_up(batch)` before
    scoring each batch.

    kafka-python runs rebalance callbacks on its network thread, where no blocking call is
    allowed, so they only note the change; `catch_up` applies it on the scoring thread."""

    def __init__(
        self,
        reader: KafkaConsumer,
        scoring: KafkaConsumer,
        topic: str,
        add: Callable[[bytes], None],
        wait_s: float = 60.0,
    ):
        self.reader = reader
        self.scoring = scoring
        self.add = add
        self.wait_s = wait_s
        self.partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        if not self.partitions:
            raise ValueError(f"topic {topic} has no partitions: create the topics first")
        reader.assign(self.partitions)
        reader.seek_to_beginning(*self.partitions)
        self.owned: set[TopicPartition] = set()
        self._scored_up_to: dict[TopicPartition, int] = {}  # next offset after what was scored
        self._assigned: list[TopicPartition] = []
        self._revoked: list[TopicPartition] = []

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._assigned += [tp for tp in assigned if tp in self.partitions]

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._revoked += [tp for tp in revoked if tp in self.partitions]

    def catch_up(self, batch: Iterable[ConsumerRecord]) -> None:
        """Before `batch` is scored: applies ownership changes, and reads the partitions this
        instance does not own up to their end offsets."""
        self._apply_revoked()
        self._apply_assigned()
        for record in batch:
            tp = TopicPartition(record.topic, record.partition)
            self._scored_up_to[tp] = max(self._scored_up_to.get(tp, 0), record.offset + 1)
        others = [tp for tp in self.partitions if tp not in self.owned]
        if others:
            self._read_until(self.reader.end_offsets(others))

    def _apply_revoked(self) -> None:
        for tp in self._revoked:
            if tp in self.owned:
                # History holds everything before where this instance's scoring stopped.
                self.reader.seek(tp, self._scored_up_to.get(tp, self.reader.position(tp)))
                self.reader.resume(tp)
                self.owned.discard(tp)
        self._revoked.clear()

    def _apply_assigned(self) -> None:
        if not self._assigned:
            return
        new = [tp for tp in self._assigned if tp not in self.owned]
        self._assigned.clear()
        # Scoring starts at the group's committed offset: history must hold what is before it.
        self._read_until({tp: offset for tp in new if (offset := self.scoring.committed(tp))})
        self.owned.update(new)
        self.reader.pause(*new)
        log.info(
            "scoring partitions %s; reading %s for history",
            sorted(tp.partition for tp in self.owned),
            sorted(tp.partition for tp in self.partitions if tp not in self.owned),
        )

    def _read_until(self, targets: dict[TopicPartition, int]) -> None:
        """Reads the partitions not owned until each one in `targets` reached its offset."""
        deadline = time.monotonic() + self.wait_s
        pending = {tp: offset for tp, offset in targets.items() if self.reader.position(tp) < offset}
        while pending:
            if time.monotonic() > deadline:
                # Scoring goes on with the history it has rather than stalling.
                log.warning("history of partitions %s not caught up in %.0f s", sorted(pending), self.wait_s)
                return
            for records in self.reader.poll(timeout_ms=100, max_records=10_000).values():
                for record in records:
                    self.add(record.value)
            pending = {tp: offset for tp, offset in pending.items() if self.reader.position(tp) < offset}
