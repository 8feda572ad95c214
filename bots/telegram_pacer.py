"""Telegram's limits for the whole bot: python-telegram-bot's AIORateLimiter, with room kept for what matters most.

AIORateLimiter holds every Bot API call into a chat to an overall rate and every
call into a group to a per-group rate (leaky buckets; a call waits for its turn,
first come first served). A leaky bucket of capacity C refilled at r per second
lets C + r·T calls through in any T seconds, so to stay within Telegram's "30 a
second" and "20 a minute in a group" in *every* second and minute (the fake Bot
API counts sliding windows) the buckets are small: a fifth of the rate up front,
the rest as refill (6 at once then 24 a second; 5 at once then one every 4 s).

On top of it the chat lanes (bots/throttle.py) space the calls into one chat and
decide what to send: before a call enters the limiter, the lane asks `room`
whether the buckets hold more than that call's priority leaves free. So the first
reply to a new link always finds room first, a delivery nearly always, and
progress edits use what is left (they wait, coalescing into the newest text,
while the bot is busy).

A 429 is not retried here (``max_retries=0``): AIORateLimiter would halt *every*
call for the wait, while the answer concerns one chat; the chat's lane waits it
out alone.
"""

from __future__ import annotations

from telegram.ext import AIORateLimiter

from bots.throttle import Priority

UP_FRONT = 0.2  # of a window's calls, what a bucket lets through at once; the rest comes as refill
GROUP_PER_MINUTE = 20
# How much of a bucket each priority leaves free for the ones above it.
RESERVE = {Priority.REPLY: 0.0, Priority.DELIVERY: 0.2, Priority.EDIT: 0.5}


def bucket(calls: float, window: float) -> tuple[float, float]:
    """aiolimiter's (max_rate, time_period) for a bucket that never lets more than `calls` through in `window`."""
    capacity = calls * UP_FRONT
    refill = calls * (1 - UP_FRONT) / window  # per second
    return capacity, capacity / refill


class Pacer(AIORateLimiter):
    def __init__(self, per_second: float) -> None:
        overall, group = bucket(per_second, 1.0), bucket(GROUP_PER_MINUTE, 60.0)
        super().__init__(overall_max_rate=overall[0], overall_time_period=overall[1], group_max_rate=group[0],
                         group_time_period=group[1], max_retries=0)

    def room(self, chat_id: int, priority: Priority) -> bool:
        """Whether a call of this priority into this chat may enter the limiter now."""
        limiters = [self._base_limiter]
        if chat_id < 0:  # AIORateLimiter's own rule: negative ids are groups and channels
            limiters.append(self._get_group_limiter(chat_id))
        return all(limiter is None or limiter.has_capacity(1 + RESERVE[priority] * max(limiter.max_rate - 1, 0))
                   for limiter in limiters)
