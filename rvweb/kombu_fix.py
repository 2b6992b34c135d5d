"""Keep the worker alive when its Redis broker connection drops while a task runs (kombu 5.7).

What happens without it: the consumer closes the lost connection; closing the channel restores the
unacknowledged message of the running task, which needs a new Redis client, which reads the
connection's URL from a transport whose `client` the close has already cleared. The AttributeError
is not a connection error, so Celery reports "Unrecoverable error" and the worker exits (the same
family as celery/kombu#582 and #970). Reproduced by tests/web/test_outage_e2e.py.

The same happens when the running task ends after the reconnection and its message is acknowledged
(or rejected) on the old, closed channel. With this module, the restore, ack and reject are skipped
when the channel's connection is already gone: the message stays in Redis's "unacked" set. Nothing
is lost either way: a Redis that restarted empty keeps nothing to restore, one that kept its data
redelivers the message after the visibility timeout (a finished job ignores it), and rvweb's
recovery (transfers/tasks.py) re-enqueues any job that was interrupted.
Remove this once kombu no longer needs it (the test
tests/web/test_outage_e2e.py fails without it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kombu.transport import redis as redis_transport

logger = logging.getLogger(__name__)

_restore_unacked: Callable[..., Any] = redis_transport.QoS.restore_unacked
_ack: Callable[..., Any] = redis_transport.QoS.ack
_reject: Callable[..., Any] = redis_transport.QoS.reject


def _closed(qos: Any) -> bool:
    return getattr(qos.channel.connection, "client", None) is None


def _restore_unacked_unless_closed(self: Any, client: Any = None) -> Any:
    if client is None and _closed(self):
        logger.warning("broker connection closed: %d unacknowledged message(s) left for Redis", len(self._delivered))
        return None
    return _restore_unacked(self, client)


def _ack_unless_closed(self: Any, delivery_tag: Any) -> None:
    if _closed(self):
        logger.warning("broker connection closed: a finished task's message could not be acknowledged")
        return
    _ack(self, delivery_tag)


def _reject_unless_closed(self: Any, delivery_tag: Any, requeue: bool = False) -> None:
    if _closed(self):
        logger.warning("broker connection closed: a message could not be rejected")
        return
    _reject(self, delivery_tag, requeue=requeue)


def install() -> None:
    setattr(redis_transport.QoS, "restore_unacked", _restore_unacked_unless_closed)  # noqa: B010
    setattr(redis_transport.QoS, "ack", _ack_unless_closed)  # noqa: B010
    setattr(redis_transport.QoS, "reject", _reject_unless_closed)  # noqa: B010
