"""A Redis broker whose idle consumers are woken by a new message instead of finding it on their next look.

Dramatiq's idle Redis consumer sleeps between looks (backing off up to the worker's timeout,
100 ms here: EVALUATOR_BROKER_WORKER_TIMEOUT_MS), so a run sent to an idle worker waited half
that on average before pickup. Here every enqueue also pushes a token on the queue's wake list
(`<namespace>:<queue>.wake`, trimmed and expiring: nobody has to drain it), and an idle consumer
waits on that list with BLPOP, for at most the same timeout. A message is then fetched as soon
as it is sent; with nothing sent the consumer looks as often as before (its acks and delayed
messages are handled between looks, so the timeout stays short).
"""

from __future__ import annotations

import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer  # NOTE: the consumer Dramatiq's broker makes
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

WAKE_TOKENS = 8  # a wake list holds at most this many tokens: a burst wakes every idle consumer, no more
WAKE_TTL_S = 60  # a list nobody waits on goes away


def wake_key(namespace: str, queue_name: str) -> str:
    return f"{namespace}:{queue_name}.wake"


class WakingRedisBroker(RedisBroker):
    """RedisBroker whose enqueue wakes an idle consumer of the message's queue (or delay queue)."""

    @property
    def consumer_class(self):  # type: ignore[no-untyped-def]  # Dramatiq's own property is untyped
        return _WakingConsumer

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        sent = super().enqueue(message, delay=delay)
        key = wake_key(self.namespace, sent.queue_name)  # a delayed message is on the delay queue (`.DQ`)
        try:
            self.client.pipeline(transaction=False).lpush(key, 1).ltrim(key, 0, WAKE_TOKENS - 1).expire(
                key, WAKE_TTL_S).execute()
        except redis.RedisError:  # NOTE: the message is sent; without its token it is found on the next look
            pass
        return sent


class _WakingConsumer(_RedisConsumer):
    """A consumer that, finding its queue empty, waits on the queue's wake list instead of sleeping."""

    def __next__(self):  # type: ignore[no-untyped-def]  # as Dramatiq's
        if not self.message_cache and self.outstanding_message_count < self.prefetch:
            try:
                self.message_cache = self.broker.do_fetch(self.queue_name,
                                                          self.prefetch - self.outstanding_message_count)
                if not self.message_cache:
                    self.broker.client.blpop([wake_key(self.broker.namespace, self.queue_name)],
                                             timeout=max(self.timeout, 1) / 1000)
                    return None  # the worker handles acks and delayed messages, then looks again
            except redis.ConnectionError as ex:
                raise ConnectionClosed(ex) from None
        return super().__next__()
