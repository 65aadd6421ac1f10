"""A consume-transform-produce application with exactly-once semantics, run as a separate
process by test_transactions.py so that it can be killed with SIGKILL at any moment.

It reads `in-N` records from the input topic as a member of a consumer group
(read_committed), and for each writes `out-N` to the output topic, in a transaction that
also commits the consumed offsets (send_offsets_to_transaction). A retriable error repeats
the call; after an abortable one it aborts and rewinds to the committed offsets; after a
fatal one (its producer or its consumer was fenced) it exits 2, to be restarted.
It exits 0 once the input has been quiet for `idle_s` seconds after the last record.

Usage: eos_app.py BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID IDLE_S

What it does goes to stderr (a line per failure, progress every 5 s); SIGUSR1 prints every
thread's stack there, and so does a loop turn stuck for WATCHDOG_S before the app exits 1;
with EOS_APP_DEBUG_LOG=FILE, stderr and librdkafka's consumer-group and transaction debug
logs go to FILE.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


# Three times a transactional call's 30 s timeout: a turn of the loop (or the closing) that
# takes longer is stuck, not slow.
WATCHDOG_S = 90


def main() -> int:
    bootstrap, source, sink, group, transactional_id, idle_s = sys.argv[1:7]
    # SIGUSR1 prints where every thread is: the test sends it to an app that hangs.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.instance.id": f"{group}-instance",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # Longer than a coordinator failover here (the 4 s broker session, an election, a
            # load), as Kafka's 45 s default is; a shorter one races the failover.
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 500,
            "reconnect.backoff.max.ms": 200,
            **debug_config("cgrp,consumer"),
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            "transaction.timeout.ms": 10000,
            "linger.ms": 5,
            "reconnect.backoff.max.ms": 200,
            **debug_config("eos"),
        }
    )
    producer.init_transactions(60)
    consumer.subscribe([source])
    last_record = last_report = time.monotonic()
    committed = 0
    while time.monotonic() - last_record < float(idle_s):
        # A liveness probe: a loop turn stuck for WATCHDOG_S (a librdkafka call past its own
        # timeout) prints every stack and exits 1, for the supervisor to restart the app.
        faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
        if time.monotonic() - last_report > 5:
            last_report = time.monotonic()
            report(f"{committed} transactions committed; assigned {len(consumer.assignment())} partitions")
        batch = consumer.consume(num_messages=50, timeout=0.5)
        for failed in (m.error() for m in batch if m.error() is not None):
            report(f"consumer error: {failed}")
            if failed.fatal():
                # A static member whose session timed out while its coordinator moved, for
                # one: librdkafka then heartbeats without a member id and is fenced for good.
                return 2
        messages = [m for m in batch if m.error() is None]
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


def debug_config(contexts: str) -> dict:
    """librdkafka's debug log of `contexts`, if EOS_APP_DEBUG_LOG names a file: stderr then
    goes to that file, written by librdkafka's own threads as things happen (a Python logger
    would only see the lines the app's next poll serves, nothing while a call hangs)."""
    path = os.environ.get("EOS_APP_DEBUG_LOG")
    if not path:
        return {}
    global _debug_log
    if _debug_log is None:
        _debug_log = open(path, "ab", buffering=0)
        os.dup2(_debug_log.fileno(), sys.stderr.fileno())
    return {"debug": contexts}


_debug_log = None


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
