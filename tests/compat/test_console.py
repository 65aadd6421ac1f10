"""The web console (`runnel server --console`), driven as a person would in headless Chromium.

One scenario against a real broker: the cluster page; a topic created through the form;
records produced by confluent-kafka (a JSON value, a text value and a binary value, one with
a header) and read back in the message browser, JSON pretty-printed and binary as hex, then
found by key; a topic config changed through the edit form and checked with confluent-kafka's
admin client; a consumer group that consumed everything and committed short of the end, its
lag seen on the groups page and on the group's own page. The API's errors are JSON.

Chromium is Debian's (`apt-get install chromium`; scripts/test.sh installs it), driven by
Playwright for Python without `playwright install`: a missing browser fails the test, it is
not skipped. Each step's screenshot is saved in pytest's tmp_path and its path printed
(visible with `-s`) and named in any failure.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import ConfigResource

from conftest import unique_topic
from support import admin_client, consumer, produce_and_flush, producer, wait_until

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
]
# Playwright's waits: long enough for a slow CI machine, far below the test's timeout.
WAIT_MS = 15_000


class Steps:
    """Screenshots of the scenario, one per step, and a failure that names them all."""

    def __init__(self, page, directory: Path):
        self.page = page
        self.directory = directory
        self.paths: list[Path] = []

    def shot(self, name: str) -> Path:
        path = self.directory / f"{len(self.paths) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.paths.append(path)
        print(f"console screenshot: {path}")
        return path

    def listing(self) -> str:
        return "\n".join(f"  {path}" for path in self.paths) or "  (none)"

    @contextmanager
    def step(self, name: str):
        """Runs one step; on failure, a screenshot of the page as it was and every path."""
        try:
            yield
        except Exception as error:
            try:
                self.shot(f"FAILED-{name}")
            except Exception as shot_error:  # the page itself may be gone
                print(f"no screenshot of the failure: {shot_error}")
            raise AssertionError(f"step {name!r} failed: {error}\nscreenshots:\n{self.listing()}") from error
        self.shot(name)


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def commit_with_retry(c, offsets: list[TopicPartition]) -> None:
    # The first commit of a fresh broker may meet COORDINATOR_NOT_AVAILABLE while
    # __consumer_offsets is created.
    last = None
    for _ in range(100):
        try:
            c.commit(offsets=offsets, asynchronous=False)
            return
        except Exception as error:  # KafkaException
            last = error
            time.sleep(0.1)
    raise AssertionError(f"commit failed: {last}")


def test_console_topics_messages_configs_and_group_lag(broker_factory, tmp_path):
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"Chromium is missing at {CHROMIUM}: `apt-get install chromium` (scripts/test.sh does), "
            "or set CHROMIUM to its path",
            pytrace=False,
        )
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError as error:
        pytest.fail(f"Playwright is missing ({error}): pip install -r tests/compat/requirements.txt", pytrace=False)

    broker = broker_factory.start("--console", "--group-initial-rebalance-delay-ms", "0")
    console = f"{broker.admin_url}/console/"
    topic = unique_topic("console")
    group = f"console-group-{topic[-10:]}"

    # The API answers errors as JSON with a status that is not 200.
    status, body = get_json(f"{broker.admin_url}/console/api/topics/{topic}")
    assert status == 404 and topic in body["error"], (status, body)
    status, body = get_json(f"{broker.admin_url}/console/api/topics/{topic}/messages?limit=100000")
    assert status == 400 and "limit" in body["error"], (status, body)

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(WAIT_MS)
            page_errors: list[str] = []
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            steps = Steps(page, tmp_path)
            testid = page.get_by_test_id

            with steps.step("overview"):
                page.goto(console)
                testid("overview-loaded").wait_for(state="attached")
                expect(testid("broker-row")).to_have_count(1)
                expect(testid("broker-row")).to_contain_text(broker.bootstrap)
                expect(testid("controller-id")).to_have_text(str(broker.node_id))
                expect(testid("health-status")).to_have_text("healthy")
                expect(testid("health-leaderless")).to_have_text("0")

            with steps.step("topic-created"):
                testid("nav-topics").click()
                testid("topics-loaded").wait_for(state="attached")
                testid("create-topic-name").fill(topic)
                testid("create-topic-partitions").fill("2")
                testid("create-topic-submit").click()
                expect(testid("create-topic-created")).to_contain_text(topic)
                row = page.locator(f'[data-testid="topic-row"][data-topic="{topic}"]')
                expect(row).to_have_count(1)
                expect(row.locator("td").nth(1)).to_have_text("2")

            json_value = {"order": 17, "items": ["tea", "cake"], "paid": True}
            p = producer(broker.bootstrap)
            p.produce(topic, key=b"k-json", value=json.dumps(json_value).encode(), partition=0,
                      headers=[("trace-id", b"abc-123")])
            p.produce(topic, key=b"k-text", value="plain text, ünïcode".encode(), partition=0)
            p.produce(topic, key=b"k-bin", value=bytes([0xDE, 0xAD, 0xBE, 0xEF, 0x00, 0x01, 0x02]), partition=0)
            for i in range(4):
                p.produce(topic, key=f"p1-{i}".encode(), value=f"second partition {i}".encode(), partition=1)
            produce_and_flush(p)

            with steps.step("topic-page"):
                page.locator(f'[data-testid="topic-row"][data-topic="{topic}"] a').click()
                testid("topic-loaded").wait_for(state="attached")
                expect(testid("topic-name")).to_have_text(topic)
                expect(testid("partition-row")).to_have_count(2)
                expect(testid("partition-high-watermark").nth(0)).to_have_text("3")
                expect(testid("partition-high-watermark").nth(1)).to_have_text("4")
                expect(testid("topic-records")).to_have_text("7")

            with steps.step("messages-partition-0"):
                testid("topic-browse-link").click()
                testid("messages-loaded").wait_for(state="attached")
                testid("msg-partition").select_option("0")
                testid("msg-mode").select_option("oldest")
                testid("msg-submit").click()
                page.wait_for_url("**mode=oldest**")
                expect(testid("message-row")).to_have_count(3)
                values = testid("message-value")
                expect(values.nth(0)).to_have_attribute("data-kind", "json")
                # Pretty-printed: one key per line, indented.
                expect(values.nth(0)).to_have_text(json.dumps(json_value, indent=2))
                expect(values.nth(1)).to_have_attribute("data-kind", "text")
                expect(values.nth(1)).to_have_text("plain text, ünïcode")
                expect(values.nth(2)).to_have_attribute("data-kind", "binary")
                expect(values.nth(2)).to_contain_text("de ad be ef 00 01 02")
                expect(testid("message-key").nth(2)).to_have_text("k-bin")
                expect(testid("message-headers").nth(0)).to_contain_text("trace-id: abc-123")
                expect(testid("messages-summary")).to_contain_text("read to the end")

            with steps.step("messages-by-key"):
                testid("msg-partition").select_option("all")
                testid("msg-mode").select_option("oldest")
                testid("msg-key").fill("p1-2")
                testid("msg-submit").click()
                page.wait_for_url("**key=p1-2**")
                expect(testid("message-row")).to_have_count(1)
                expect(testid("message-value")).to_have_text("second partition 2")
                expect(testid("message-row")).to_have_attribute("data-partition", "1")

            with steps.step("config-edited"):
                page.goto(f"{console}#/topics/{topic}")
                testid("topic-loaded").wait_for(state="attached")
                testid("config-input-retention.ms").fill("3600000")
                testid("config-save").click()
                expect(testid("config-saved")).to_contain_text("retention.ms")
                expect(page.locator('[data-testid="config-row"][data-config="retention.ms"]')).to_contain_text(
                    "set on topic"
                )
            resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
            admin = admin_client(broker.bootstrap)  # kept alive until its answer came
            described = admin.describe_configs([resource])[resource].result(timeout=15)
            assert described["retention.ms"].value == "3600000", (
                f"{described['retention.ms']}\nscreenshots:\n{steps.listing()}"
            )

            # A group that read everything but committed short of the end: lag 0 on
            # partition 0, 4 - 1 = 3 on partition 1. It stays a member while the pages load.
            member = consumer(broker.bootstrap, **{"group.id": group, "session.timeout.ms": 10000})
            try:
                member.subscribe([topic])
                seen = []

                def read_all() -> bool:
                    message = member.poll(0.2)
                    if message is not None and message.error() is None:
                        seen.append(message)
                    return len(seen) == 7

                wait_until(read_all, 20, "the group's member to read all 7 records")
                commit_with_retry(member, [TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 1)])

                with steps.step("groups"):
                    testid("nav-groups").click()
                    testid("groups-loaded").wait_for(state="attached")
                    row = page.locator(f'[data-testid="group-row"][data-group="{group}"]')
                    expect(row).to_have_count(1)
                    expect(row.get_by_test_id("group-lag")).to_have_text("3")

                with steps.step("group-page"):
                    row.get_by_test_id("group-link").click()
                    testid("group-loaded").wait_for(state="attached")
                    expect(testid("group-id")).to_have_text(group)
                    expect(testid("group-lag-total")).to_have_text("3")
                    lag_of = lambda partition: page.locator(  # noqa: E731
                        f'[data-testid="offset-row"][data-partition="{partition}"] [data-testid="offset-lag"]'
                    )
                    expect(lag_of(0)).to_have_text("0")
                    expect(lag_of(1)).to_have_text("3")
                    expect(testid("member-row")).to_have_count(1)
                    expect(testid("group-state")).to_have_text("Stable")
                    # The chart has the groups page's sample and this page's.
                    chart = testid("lag-chart")
                    expect(chart).to_be_visible()
                    assert int(chart.get_attribute("data-samples")) >= 1
            finally:
                member.close()

            assert not page_errors, f"JavaScript errors: {page_errors}\nscreenshots:\n{steps.listing()}"
        finally:
            browser.close()
    print("console screenshots:\n" + steps.listing())
