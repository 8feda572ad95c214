"""Redis logic written once for both clients: a plan says what to send, a driver sends it.

A plan is a generator that yields `Batch`es (commands queued on a pipeline) and
receives each batch's replies (or, thrown in at the `yield`, the error Redis
answered); what it returns is the result. The workers and the
terminal run plans on the blocking client (`run`), the chat bots on `redis.asyncio`
(`arun`), so a key name, a Lua script or the parsing of a reply exists in one place
whichever client sends it.

    def state(keys: Keys, job_id: str) -> Plan[str | None]:
        [raw] = yield Batch(lambda pipe: pipe.hget(keys.job(job_id), "state"))
        return raw and json.loads(raw)
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
import redis.asyncio

T = TypeVar("T")


@dataclass(frozen=True)
class Batch:
    """Commands queued on one pipeline (sync or async: they queue alike), sent in one round trip."""

    queue: Callable[[Any], object]
    atomic: bool = True
    """MULTI/EXEC around the batch; off for a blocking read (Redis does not block inside MULTI)."""


Plan = Generator[Batch, list[Any], T]


def run(client: redis.Redis, plan: Plan[T]) -> T:
    """Carry out a plan with the blocking client."""
    try:
        batch = next(plan)
        while True:
            pipe = client.pipeline(transaction=batch.atomic)
            batch.queue(pipe)
            try:
                replies = pipe.execute()
            except redis.ResponseError as error:  # the plan may handle it (a missing group, say)
                batch = plan.throw(error)
            else:
                batch = plan.send(replies)
    except StopIteration as done:
        return done.value


async def arun(client: redis.asyncio.Redis, plan: Plan[T]) -> T:
    """Carry out a plan with the asyncio client."""
    try:
        batch = next(plan)
        while True:
            pipe = client.pipeline(transaction=batch.atomic)
            batch.queue(pipe)
            try:
                replies = await pipe.execute()
            except redis.ResponseError as error:
                batch = plan.throw(error)
            else:
                batch = plan.send(replies)
    except StopIteration as done:
        return done.value


def command(name: str, *args: Any, **options: Any) -> Batch:
    """One command as a batch of its own (atomic by itself: no MULTI): ``[value] = yield command("get", key)``."""
    return Batch(lambda pipe: getattr(pipe, name)(*args, **options), atomic=False)


def text(raw: bytes | str, errors: str = "strict") -> str:
    """A reply as text: our clients answer bytes (redis-py types replies for `decode_responses` too)."""
    return raw.decode(errors=errors) if isinstance(raw, bytes) else raw


def members(reply: Iterable[Any]) -> list[str]:
    """A reply of set or sorted-set members (without scores) as text."""
    return [text(member) for member in reply]


def scored(reply: Iterable[Sequence[Any]]) -> list[tuple[str, float]]:
    """A WITHSCORES reply (ZRANGE, ZRANGEBYSCORE) as (member, score) pairs."""
    return [(text(member), float(score)) for member, score in reply]
