"""A kombu Redis transport that keeps unacknowledged messages across a broker restart.

The Celery worker uses it (`CELERY_WORKER_BROKER_TRANSPORT`, set on the worker's configuration
by `config/celery.py` at `celeryd_init`); web processes, commands and tests that only send tasks
keep kombu's own transport, untouched: nothing is patched at import.

kombu 5.7.0 (the newest release on our index) has two faults on this path, both seen with
`task_acks_late` while Redis restarts under load (tests/reliability/test_reliability_broker_faults.py):

1. **The worker process exits.** On a lost connection Celery calls `connection.collect()`, then
   `connection.close()`. In `collect()`, closing the task channel fails before it is marked closed
   (reading its pending BRPOP raises), and the transport's close loop stops at the first channel
   that fails (the remote-control channel, whose auto-delete queue needs Redis), so the task
   channel stays open while `collect()` detaches the transport (`transport.client = None`).
   `close()` closes the task channel again, and `QoS.restore_unacked` builds a Redis pool from
   the detached transport:
   `AttributeError: 'NoneType' object has no attribute 'hostname'` in `Channel._connparams`,
   which Celery's `ignore_errors` does not swallow ("Unrecoverable error"). The same shape as
   https://github.com/celery/kombu/issues/582 and https://github.com/celery/kombu/issues/970.
   A task that finishes after its channel was closed fails the same way on its ack
   (`'NoneType' object has no attribute 'client'`): `Message.ack_log_error` only catches
   connection errors.
2. **Messages wait an hour, or are lost.** `restore_unacked` gives messages back with Redis
   commands; with the broker down they fail, the messages stay in the `unacked` hash and come back
   only after `visibility_timeout`. And BRPOP removes a message from the queue *before* `QoS.append`
   records it in the `unacked` hash; if that write fails, only the worker holds the message, and
   kombu drops it. (Not fixable here: a BRPOP answer that Redis logged but never sent, because it
   stopped in between, never reaches the worker; celery/celery#1392, docs/reliability.md.)

What the subclasses change (nothing else):

- `Channel._connparams` on a closed or detached channel raises redis's `ConnectionError` instead
  of an `AttributeError`: every caller (Celery's `ignore_errors`, `ack_log_error`,
  `reject_log_error`, kombu's close path) already treats that as a lost connection.
- `QoS.append` records the message in the worker's memory before writing the `unacked` hash, so a
  message whose hash write failed is still known to the channel.
- `QoS.restore_unacked` never touches a detached transport and never raises a connection error:
  what it cannot give back now is *parked* in this process, with its body.
- `QoS.restore_visible` (called when a new connection registers with the event loop and every
  `unacked_restore_interval` seconds) first gives the parked messages back through the new
  connection: from the `unacked` hash when they are there, else from the parked body.

Like kombu's own restore at close, this is at-least-once: a task still running when the
connection dropped cannot be acknowledged on the dead channel and is delivered again, so it may
run twice (every task here is idempotent; docs/reliability.md). Parked messages live in this
process and are matched by `unacked_key`: one broker per worker process, as a Celery worker has.
Tested with kombu 5.7.x: on another version the transport still
loads but warns once, so an upgrade is rechecked with the test.
"""
from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass

logger = logging.getLogger(__name__)

TESTED_KOMBU = ((5, 7),)


@dataclass(frozen=True)
class ParkedMessage:
    unacked_key: str
    tag: str
    payload: dict
    exchange: str
    routing_key: str


_parked: list[ParkedMessage] = []
_parked_lock = threading.Lock()


def _park(qos, delivered) -> None:
    entries = [
        ParkedMessage(qos.unacked_key, tag, message._raw, message.delivery_info["exchange"],
                      message.delivery_info["routing_key"])
        for tag, message in delivered
    ]
    with _parked_lock:
        _parked.extend(entries)
    logger.warning("broker unreachable: %d unacknowledged message(s) parked, given back on reconnect",
                   len(entries))


def _give_back(qos, client, tag, payload, exchange, routing_key) -> None:
    """One message back to its queue, atomically with its removal from the `unacked` hash; the
    hash's copy wins over `payload` (the body as delivered), which is used when the hash has none."""
    from kombu.utils.encoding import bytes_to_str
    from kombu.utils.json import loads

    channel = qos.channel

    def transaction(pipe):
        stored = pipe.hget(qos.unacked_key, tag)
        pipe.multi()
        qos._remove_from_indices(tag, pipe)
        message = loads(bytes_to_str(stored)) if stored else [payload, exchange, routing_key]
        channel._do_restore_message(*message, pipe, False)

    client.transaction(transaction, qos.unacked_key)


def _restore_unacked(qos, client=None):
    delivered = list(qos._delivered.items())
    qos._delivered.clear()
    if not delivered:
        return
    channel = qos.channel
    transport = channel.connection
    if client is None and (transport is None or transport.client is None):
        # The connection was already collected; a pool built now would have no address (fault 1).
        _park(qos, delivered)
        return
    errors = channel.connection_errors
    try:
        with channel.conn_or_acquire(client) as client:
            while delivered:
                tag, message = delivered[0]
                _give_back(qos, client, tag, message._raw, message.delivery_info["exchange"],
                           message.delivery_info["routing_key"])
                delivered.pop(0)
    except errors:
        _park(qos, delivered)


def _restore_parked(qos) -> None:
    with _parked_lock:
        mine = [p for p in _parked if p.unacked_key == qos.unacked_key]
    if not mine:
        return
    done = 0
    try:
        with qos.channel.conn_or_acquire() as client:
            for parked in mine:
                _give_back(qos, client, parked.tag, parked.payload, parked.exchange, parked.routing_key)
                with _parked_lock:
                    _parked.remove(parked)
                done += 1
    except qos.channel.connection_errors:
        logger.info("broker still unreachable; %d parked message(s) wait for the next try", len(mine) - done)
    if done:
        logger.warning("gave back %d parked unacknowledged message(s)", done)


import kombu  # noqa: E402 - after the module's helpers, which need no kombu at import
import redis  # noqa: E402
from kombu.transport import redis as kombu_redis  # noqa: E402
from kombu.transport import virtual  # noqa: E402

if tuple(kombu.VERSION[:2]) not in TESTED_KOMBU:
    warnings.warn(f"config.kombu_transport: kombu {kombu.__version__} is not one this transport was tested "
                  "with. Run tests/reliability/test_reliability_broker_faults.py with RELIABILITY_FULL=1 and "
                  "recheck.", RuntimeWarning, stacklevel=2)


class QoS(kombu_redis.QoS):
    def append(self, message, delivery_tag):
        # Known to the channel first: if the hash write below fails, restore_unacked still has it.
        virtual.QoS.append(self, message, delivery_tag)
        super().append(message, delivery_tag)

    def restore_unacked(self, client=None):
        return _restore_unacked(self, client)

    def restore_visible(self, *args, **kwargs):
        _restore_parked(self)
        return super().restore_visible(*args, **kwargs)


class Channel(kombu_redis.Channel):
    QoS = QoS

    def _connparams(self, asynchronous=False):
        if self.connection is None or self.connection.client is None:
            raise redis.exceptions.ConnectionError("this kombu channel's broker connection is closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the channel above (select it as `transport=`)."""

    Channel = Channel
