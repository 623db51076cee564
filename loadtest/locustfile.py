"""Locust load test of an appliance: producers and a consumer group on one topic.

    locust -f loadtest/locustfile.py --host 127.0.0.1:7092          # web UI on :8089
    locust -f loadtest/locustfile.py --headless -u 10 -r 10 -t 30s --host 127.0.0.1:7092

Locust runs each user as a gevent greenlet in a monkey-patched process, so the
client's threads are greenlets too and its I/O "thread" picks zmq.green by
itself (appliance.client.connection.io_zmq): one user waiting for the
appliance lets the others run. Every request is reported through Locust's
request event: "produce" is one record from send() to its acknowledgement,
"consume" one poll() that returned records (empty polls are not requests:
nothing was delivered), "join_group" a consumer's subscribe().

Options of this file (also in the web UI): --topic, --partitions (used when
the topic is created at test start; an existing topic is used as it is),
--record-size, --acks, --consumer-group.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

import gevent
from locust import User, constant, events, task

from appliance.client import Admin, Consumer, Producer
from appliance.client.connection import DEFAULT_BOOTSTRAP
from shm.errors import RinglogError, TopicAlreadyExistsError

REQUEST_TIMEOUT_MS = 5_000  # a dead appliance fails requests instead of hanging users
POLL_TIMEOUT_MS = 500  # one consume task: at most this long waiting for records
CLOSE_TIMEOUT_S = 5.0


def bootstrap_of(host: str | None) -> str:
    """Locust's --host as a bootstrap server: HOST:PORT, with or without tcp://."""
    host = (host or DEFAULT_BOOTSTRAP).strip()
    return host.removeprefix("tcp://").rstrip("/")


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--topic", default="locust", help="topic to produce to and consume from")
    parser.add_argument("--partitions", type=int, default=8,
                        help="partitions of the topic if the test creates it")
    parser.add_argument("--record-size", type=int, default=100, help="bytes per record value")
    parser.add_argument("--acks", choices=["0", "1", "all"], default="1",
                        help="acknowledgement each produced record waits for")
    parser.add_argument("--consumer-group", default="locust-consumers",
                        help="the group every ConsumerUser joins")


@events.test_start.add_listener
def _create_topic(environment, **_kwargs) -> None:
    """Create the topic once, before any user starts, so that consumers joining
    the group find its partitions; an existing topic is kept as it is."""
    options = environment.parsed_options
    if options is None:
        return
    bootstrap = bootstrap_of(environment.host or ProducerUser.host)
    try:
        with Admin(bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS) as admin, \
                contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topic(options.topic, options.partitions)
    except RinglogError as exc:  # one line and exit 1, not a run of failing users
        logging.error("cannot create topic %s at %s: %s (%s)", options.topic, bootstrap,
                      exc, exc.name)
        environment.process_exit_code = 1
        gevent.spawn(environment.runner.quit)  # not from here: this greenlet is the runner's


def _report(user: User, request_type: str, name: str, started: float, length: int,
            error: BaseException | None) -> None:
    user.environment.events.request.fire(
        request_type=request_type, name=name,
        response_time=(time.perf_counter() - started) * 1000, response_length=length,
        exception=error, context={})


class ProducerUser(User):
    """Sends one record at a time and waits for its acknowledgement (linger 0:
    with one record in flight, lingering would only add to the latency)."""

    host = DEFAULT_BOOTSTRAP
    wait_time = constant(0)

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.topic = options.topic
        self.value = os.urandom(options.record_size)
        self.producer = Producer(bootstrap_of(self.host), acks=options.acks, linger_ms=0,
                                 request_timeout_ms=REQUEST_TIMEOUT_MS,
                                 delivery_timeout_ms=2 * REQUEST_TIMEOUT_MS)

    @task
    def produce(self) -> None:
        started = time.perf_counter()
        error = None
        try:
            self.producer.send(self.topic, self.value).result(
                timeout=4 * REQUEST_TIMEOUT_MS / 1000)
        except Exception as exc:
            error = exc
        _report(self, "produce", self.topic, started, len(self.value), error)

    def on_stop(self) -> None:
        with contextlib.suppress(Exception):
            self.producer.close(timeout=CLOSE_TIMEOUT_S)


class ConsumerUser(User):
    """A member of one consumer group, polling the topic's partitions it is assigned."""

    host = DEFAULT_BOOTSTRAP
    wait_time = constant(0)

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.topic = options.topic
        self.consumer = Consumer(bootstrap_servers=bootstrap_of(self.host),
                                 group_id=options.consumer_group,
                                 auto_offset_reset="earliest",
                                 request_timeout_ms=REQUEST_TIMEOUT_MS)
        started = time.perf_counter()
        error = None
        try:
            self.consumer.subscribe([self.topic])
        except Exception as exc:
            error = exc
        _report(self, "join_group", options.consumer_group, started, 0, error)

    @task
    def consume(self) -> None:
        started = time.perf_counter()
        try:
            messages = self.consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
        except Exception as exc:
            _report(self, "consume", self.topic, started, 0, exc)
            return
        if messages:
            _report(self, "consume", self.topic, started,
                    sum(len(m.value or b"") for m in messages), None)

    def on_stop(self) -> None:
        with contextlib.suppress(Exception):
            self.consumer.close()
