"""Every partition's transactions in a scoring instance's feature history.

A scoring instance is a consumer-group member: it scores the partitions of `transactions` it
is assigned, and since the topic is keyed by customer it owns whole customers and their
history. Terminal features, though, aggregate every customer's transactions, so each
instance also reads the partitions it does not own, for history only, with a reader of its
own (no group, no commits). Before each batch is scored:

- the partitions it does not own are read up to their end offsets, so every transaction
  produced before the batch is in history. Reading ahead changes nothing: a feature's window
  ends strictly before its transaction's time.
- for each partition in the batch, history must hold everything before the batch's first
  record: what another instance scored before this one took the partition over, or, after a
  start, what arrived after the warehouse the store was bootstrapped from. The reader reads
  any such gap first.

Ownership is read from the scoring consumer's assignment at each batch, so any sequence of
rebalances between two batches ends in the right state. With one instance every partition
is its own, so after the first batch this costs nothing.
"""
import logging
import time
from collections.abc import Callable, Iterable

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

log = logging.getLogger(__name__)


class StreamHistory:
    """Feeds `add` the messages a scoring instance's history needs; call `catch_up(batch)`
    before scoring each batch."""

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
        self.topic = topic
        self.partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        self._topic_partitions = frozenset(self.partitions)
        if not self.partitions:
            raise ValueError(f"topic {topic} has no partitions: create the topics first")
        reader.assign(self.partitions)
        reader.seek_to_beginning(*self.partitions)
        self.owned: set[TopicPartition] = set()
        self._scored_up_to: dict[TopicPartition, int] = {}  # next offset after what was scored

    def catch_up(self, batch: Iterable[ConsumerRecord]) -> None:
        """Before `batch` is scored: follows the scoring consumer's assignment, fills any gap
        before the batch's records, and reads the partitions not owned up to their end."""
        self._follow_assignment()
        firsts: dict[int, int] = {}  # the batch's first and last offsets per partition
        lasts: dict[int, int] = {}
        for record in batch:  # in offset order within each partition, as consumed
            firsts.setdefault(record.partition, record.offset)
            lasts[record.partition] = record.offset
        offsets = {TopicPartition(self.topic, p): (first, lasts[p]) for p, first in firsts.items()}
        gaps = {tp: first for tp, (first, _) in offsets.items() if self._history_end(tp) < first}
        for tp in gaps:
            self.reader.seek(tp, self._history_end(tp))
        others = [tp for tp in self.partitions if tp not in self.owned]
        self._read_until({**(self.reader.end_offsets(others) if others else {}), **gaps})
        for tp, (_, last) in offsets.items():
            self._scored_up_to[tp] = max(self._scored_up_to.get(tp, 0), last + 1)

    def _history_end(self, tp: TopicPartition) -> int:
        """The offset up to which history holds the partition: read, or scored here."""
        return max(self.reader.position(tp), self._scored_up_to.get(tp, 0))

    def _follow_assignment(self) -> None:
        owned = self.scoring.assignment() & self._topic_partitions
        for tp in self.owned - owned:
            # Given up: read it again from where this instance's history of it ends.
            self.reader.seek(tp, self._history_end(tp))
            self.reader.resume(tp)
        self.reader.pause(*(owned - self.owned))
        if owned != self.owned:
            log.info(
                "scoring partitions %s; reading %s for history",
                sorted(tp.partition for tp in owned),
                sorted(tp.partition for tp in self.partitions if tp not in owned),
            )
        self.owned = owned

    def _read_until(self, targets: dict[TopicPartition, int]) -> None:
        """Reads until each partition in `targets` reached its offset (owned ones are resumed
        for as long as it takes)."""
        deadline = time.monotonic() + self.wait_s
        pending = {tp: offset for tp, offset in targets.items() if self.reader.position(tp) < offset}
        gaps = [tp for tp in pending if tp in self.owned]
        self.reader.resume(*gaps)
        try:
            while pending:
                if time.monotonic() > deadline:
                    # Scoring goes on with the history it has rather than stalling.
                    log.warning("history of partitions %s not caught up in %.0f s", sorted(pending), self.wait_s)
                    return
                for records in self.reader.poll(timeout_ms=100, max_records=10_000).values():
                    for record in records:
                        self.add(record.value)
                pending = {tp: offset for tp, offset in pending.items() if self.reader.position(tp) < offset}
        finally:
            self.reader.pause(*gaps)
