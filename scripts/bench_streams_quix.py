#!/usr/bin/env python3
"""The quixstreams side of scripts/bench_streams.py: the same three pipelines as
crates/runnel-streams/examples/streams_bench, from topic --input to topic --output, until
SIGTERM (quixstreams' Application.run() then commits and stops cleanly).

- wordcount: lower-cased words split on whitespace, regrouped by word (a repartition topic,
  as runnel-streams' group_by), the value the word's running count as a decimal string;
- windowed: a count per key in tumbling 60 s windows on event time (the records'
  timestamps) with a 10 s grace, emitted on every update (`.current()`); the output key is
  the key, the value quixstreams' window result as JSON: {"start", "end", "value"};
- passthrough: every record copied as it is.

Runs in its own virtualenv (.venv-quix, from scripts/bench-requirements.txt): quixstreams
3.28.1 needs confluent-kafka < 2.13, the compat tests pin 2.16.1.

Usage: .venv-quix/bin/python scripts/bench_streams_quix.py --bootstrap HOST:PORT
       --pipeline wordcount|windowed|passthrough --input IN --output OUT --application-id ID
       --state-dir DIR [--exactly-once] [--commit-interval SECONDS]
"""

from __future__ import annotations

import argparse

from quixstreams import Application

WINDOW_MS = 60_000
GRACE_MS = 10_000


def count_word(word: str, state) -> str:
    count = state.get("count", 0) + 1
    state.set("count", count)
    return str(count)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--pipeline", required=True, choices=["wordcount", "windowed", "passthrough"])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--application-id", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--exactly-once", action="store_true")
    parser.add_argument("--commit-interval", type=float,
                        help="seconds; without it, quixstreams' default (5 s)")
    args = parser.parse_args()

    options = {}
    if args.commit_interval is not None:
        options["commit_interval"] = args.commit_interval
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.application_id,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        processing_guarantee="exactly-once" if args.exactly_once else "at-least-once",
        loglevel="WARNING",
        **options,
    )
    if args.pipeline == "wordcount":
        source = app.topic(args.input, key_deserializer="bytes", value_deserializer="string")
        sink = app.topic(args.output, key_serializer="string", value_serializer="string")
        sdf = app.dataframe(source)
        sdf = sdf.apply(lambda line: [word.lower() for word in line.split()], expand=True)
        sdf = sdf.group_by(lambda word: word, name="words", key_serializer="string",
                           key_deserializer="string", value_serializer="string",
                           value_deserializer="string")
        sdf = sdf.apply(count_word, stateful=True)
        sdf.to_topic(sink)
    elif args.pipeline == "windowed":
        source = app.topic(args.input, key_deserializer="string", value_deserializer="bytes")
        sink = app.topic(args.output, key_serializer="string", value_serializer="json")
        sdf = app.dataframe(source)
        sdf = sdf.tumbling_window(duration_ms=WINDOW_MS, grace_ms=GRACE_MS).count().current()
        sdf.to_topic(sink)
    else:
        source = app.topic(args.input, key_deserializer="bytes", value_deserializer="bytes")
        sink = app.topic(args.output, key_serializer="bytes", value_serializer="bytes")
        app.dataframe(source).to_topic(sink)
    app.run()


if __name__ == "__main__":
    main()
