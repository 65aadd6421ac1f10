#!/usr/bin/env python3
"""Connect throughput through the real processes: a release `runnel server`, a PostgreSQL
server, and a release `runnel connect standalone`, all on this machine.

    cargo build --release -p runnel-cli
    .venv/bin/python scripts/bench_connect.py [--rows 200000]

Measures, each from the REST call that creates the connector until the last row arrived:
- PostgreSQL -> topic with JdbcSource (incrementing mode, batch.max.rows 10000);
- topic -> PostgreSQL with JdbcSink, inserting, then upserting by primary key, then
  inserting with the JSON converter's schema cache off (schemas.cache.size=0) and on again;
- PostgreSQL -> topic with change data capture (rows inserted in transactions of 10,000
  after the connector started; timed from the first insert).

Needs Debian's PostgreSQL server (`apt-get install postgresql`); as root, PostgreSQL runs as
the `postgres` user.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

ROOT = Path(__file__).resolve().parent.parent
RUNNEL = ROOT / "target" / "release" / "runnel"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(predicate, timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            sys.exit(f"bench_connect: timed out waiting for {what}")
        time.sleep(interval_s)


class Postgres:
    def __init__(self, base: Path):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            sys.exit("bench_connect: no PostgreSQL server; apt-get install postgresql")
        self.bin = Path(bins[-1])
        self.dir = base / "pg"
        self.dir.mkdir()
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(base, "postgres", "postgres")
            shutil.chown(self.dir, "postgres", "postgres")
        self.run("initdb", "-D", str(self.dir / "data"), "-U", "postgres", "-A", "trust", "--no-sync")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c wal_level=logical"
        self.run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-o", options, "-w", "start")
        self.sql("postgres", "CREATE DATABASE bench")

    def run(self, program: str, *args: str) -> str:
        command = [str(self.bin / program), *args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True, cwd=self.dir).stdout

    def sql(self, database: str, statement: str) -> str:
        return self.run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
            "-v", "ON_ERROR_STOP=1", "-A", "-t", "-q", "-c", statement,
        ).strip()

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "stop")


def rest(port: int, method: str, path: str, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status


def high_watermark(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)[1]
    except Exception:  # the topic does not exist yet
        return 0
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    rows = args.rows
    if not RUNNEL.is_file():
        sys.exit("bench_connect: build first: cargo build --release -p runnel-cli")
    base = Path(tempfile.mkdtemp(prefix="runnel-bench-connect-"))
    pg = Postgres(base)
    broker_port, rest_port = free_port(), free_port()
    bootstrap = f"127.0.0.1:{broker_port}"
    logs = (base / "processes.log").open("wb")
    broker = subprocess.Popen(
        [str(RUNNEL), "server", "--listen", bootstrap, "--data-dir", str(base / "data")], stdout=logs, stderr=logs
    )
    worker = None
    results = []
    try:
        wait(lambda: socket.socket().connect_ex(("127.0.0.1", broker_port)) == 0, 30, "the broker")
        worker = subprocess.Popen(
            [
                str(RUNNEL), "connect", "standalone", "--bootstrap", bootstrap,
                "--rest-listen", f"127.0.0.1:{rest_port}", "--offsets-file", str(base / "offsets"),
                "-X", "offset.flush.interval.ms=1000",
            ],
            stdout=logs,
            stderr=logs,
        )
        wait(lambda: socket.socket().connect_ex(("127.0.0.1", rest_port)) == 0, 30, "the worker")
        url = f"jdbc:postgresql://127.0.0.1:{pg.port}/bench?user=postgres"
        pg.sql(
            "bench",
            "CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, amount bigint NOT NULL, note text);"
            f"INSERT INTO orders SELECT g, 'customer ' || (g % 1000), g * 7, 'order number ' || g "
            f"FROM generate_series(1, {rows}) g;",
        )

        started = time.monotonic()
        rest(rest_port, "POST", "/connectors", {"name": "jdbc-source", "config": {
            "connector.class": "JdbcSource", "connection.url": url, "mode": "incrementing",
            "incrementing.column.name": "id", "table.whitelist": "orders", "topic.prefix": "pg-",
            "batch.max.rows": "10000", "poll.interval.ms": "100",
        }})
        wait(lambda: high_watermark(bootstrap, "pg-orders") >= rows, 600, "the source's records", 0.2)
        results.append(("PostgreSQL -> topic, JdbcSource incrementing", rows / (time.monotonic() - started)))

        # The insert runs twice more, with the converter parsing every record's schema
        # (schemas.cache.size=0) and with its cache again, to compare the two in one run.
        sinks = [
            ("insert", "copy_insert", "1000", ""),
            ("upsert", "copy_upsert", "1000", ""),
            ("insert", "copy_insert_uncached", "0", ", schemas.cache.size=0"),
            ("insert", "copy_insert_cached", "1000", ", schemas.cache.size=1000, again"),
        ]
        for mode, table, cache_size, label in sinks:
            started = time.monotonic()
            config = {
                "connector.class": "JdbcSink", "connection.url": url, "topics": "pg-orders",
                "table.name.format": table, "insert.mode": mode, "auto.create": "true", "batch.size": "3000",
                "value.converter.schemas.cache.size": cache_size,
            }
            if mode == "upsert":
                config.update({"pk.mode": "record_value", "pk.fields": "id"})
            rest(rest_port, "POST", "/connectors", {"name": f"jdbc-sink-{table}", "config": config})

            def copied(table=table) -> bool:
                try:
                    return int(pg.sql("bench", f"SELECT count(*) FROM {table}")) >= rows
                except subprocess.CalledProcessError:
                    return False  # not created yet

            wait(copied, 600, f"the {table} sink's rows", 0.2)
            results.append((f"topic -> PostgreSQL, JdbcSink {mode}{label}", rows / (time.monotonic() - started)))
            rest(rest_port, "DELETE", f"/connectors/jdbc-sink-{table}")

        pg.sql("bench", "CREATE TABLE events (id bigint PRIMARY KEY, kind text NOT NULL, payload text)")
        rest(rest_port, "POST", "/connectors", {"name": "cdc", "config": {
            "connector.class": "PostgresCdcSource", "database.hostname": "127.0.0.1",
            "database.port": str(pg.port), "database.user": "postgres", "database.dbname": "bench",
            "topic.prefix": "cdc", "table.include.list": "public.events", "max.batch.size": "10000",
        }})
        wait(lambda: rest(rest_port, "GET", "/connectors/cdc/status") == 200, 30, "the CDC connector")
        time.sleep(2)  # past its (empty) snapshot
        started = time.monotonic()
        step = 10_000
        for first in range(1, rows + 1, step):
            pg.sql(
                "bench",
                f"INSERT INTO events SELECT g, 'kind ' || (g % 10), 'payload ' || g "
                f"FROM generate_series({first}, {min(first + step - 1, rows)}) g",
            )
        wait(lambda: high_watermark(bootstrap, "cdc.public.events") >= rows, 600, "the CDC records", 0.2)
        results.append(("PostgreSQL -> topic, change data capture", rows / (time.monotonic() - started)))
    finally:
        if worker is not None:
            worker.kill()
        broker.kill()
        pg.stop()
        logs.close()
    print(f"{rows} rows of 4 columns; machine: {os.cpu_count()} CPUs")
    print("| pipeline | rows/s |")
    print("|---|---|")
    for name, rate in results:
        print(f"| {name} | {rate:,.0f} |")
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
