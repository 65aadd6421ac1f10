"""A consume-transform-produce application with exactly-once semantics, run as a separate
process by test_transactions.py so that it can be killed with SIGKILL at any moment.

It reads `in-N` records from the input topic as a member of a consumer group
(read_committed), and for each writes `out-N` to the output topic, in a transaction that
also commits the consumed offsets (send_offsets_to_transaction). A retriable error repeats
the call; after an abortable one it aborts and rewinds to the committed offsets; after a
fatal one (it was fenced) it exits 2.
It exits 0 once the input has been quiet for `idle_s` seconds after the last record.

Usage: eos_app.py BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID IDLE_S
"""

from __future__ import annotations

import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


def main() -> int:
    bootstrap, source, sink, group, transactional_id, idle_s = sys.argv[1:7]
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.instance.id": f"{group}-instance",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "reconnect.backoff.max.ms": 200,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            "transaction.timeout.ms": 10000,
            "linger.ms": 5,
            "reconnect.backoff.max.ms": 200,
        }
    )
    producer.init_transactions(60)
    consumer.subscribe([source])
    last_record = last_report = time.monotonic()
    committed = 0
    while time.monotonic() - last_record < float(idle_s):
        if time.monotonic() - last_report > 5:
            last_report = time.monotonic()
            report(f"{committed} transactions committed; assigned {len(consumer.assignment())} partitions")
        messages = [m for m in consumer.consume(num_messages=50, timeout=0.5) if m.error() is None]
        if not messages:
            continue
        last_record = time.monotonic()
        try:
            producer.begin_transaction()
            for message in messages:
                value = message.value().decode()
                producer.produce(sink, key=message.key(), value=("out-" + value.removeprefix("in-")).encode())
            offsets = consumer.position(consumer.assignment())
            group_metadata = consumer.consumer_group_metadata()
            retrying(lambda: producer.send_offsets_to_transaction(offsets, group_metadata, 30))
            retrying(lambda: producer.commit_transaction(30))
            committed += 1
        except KafkaException as error:
            kafka_error = error.args[0]
            report(f"transaction failed: {kafka_error}")
            if kafka_error.txn_requires_abort():
                producer.abort_transaction(30)
                rewind(consumer)
                continue
            print(f"fatal: {kafka_error}", file=sys.stderr)
            return 2
    report(f"quiet for {idle_s} s after {committed} transactions: closing")
    producer.flush(30)
    consumer.close()
    report("closed")
    return 0


def retrying(call) -> None:
    """Runs a transactional call, again after a retriable error (a timeout, a coordinator
    moving), as librdkafka documents: the call resumes where it was."""
    for attempt in range(3):
        try:
            call()
            return
        except KafkaException as error:
            if not error.args[0].retriable() or attempt == 2:
                raise
            report(f"retrying after: {error.args[0]}")


def report(event: str) -> None:
    """On stderr, which the test shows if the app fails or hangs."""
    print(f"{time.strftime('%H:%M:%S', time.gmtime())} {event}", file=sys.stderr, flush=True)


def rewind(consumer: Consumer) -> None:
    """Back to the committed offsets, so the aborted records are processed again."""
    assignment = consumer.assignment()
    for committed in consumer.committed(assignment, timeout=30):
        if committed.offset >= 0:
            consumer.seek(committed)
        else:
            consumer.seek(TopicPartition(committed.topic, committed.partition, 0))


if __name__ == "__main__":
    sys.exit(main())
