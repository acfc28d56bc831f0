"""Who published a message: the node that ROS 2 graph discovery names for the message's publisher gid.

Discovery learns a publisher's endpoint (its gid) and its node's name separately: for a moment after a node
starts, its endpoint is listed under `_NODE_NAME_UNKNOWN_`. A name is therefore remembered only once
discovery knows it; until then the gid is looked up again (at most every `refresh_s`), and a message from
it waits (`Pending`) instead of being refused or played.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

UNKNOWN_NAMES = ("", "_NODE_NAME_UNKNOWN_")


def full_name(namespace: str, name: str) -> str:
    """'/ns' + 'node' -> '/ns/node'; '/' + 'node' -> '/node'."""
    return f"{namespace.rstrip('/')}/{name}"


class SenderIdentity:
    """gid -> node name, from `lookup()`: [(gid bytes, node name, node namespace), ...] of the topic's
    publishers (rclpy's `get_publishers_info_by_topic`). Names discovery does not know yet are never kept."""

    def __init__(self, lookup: Callable[[], Iterable[tuple[bytes, str, str]]], refresh_s: float = 0.05,
                 clock: Callable[[], float] = time.monotonic):
        self._lookup, self.refresh_s, self._clock = lookup, refresh_s, clock
        self._names: dict[bytes, tuple[str, str]] = {}
        self._refreshed = -float("inf")

    def name(self, gid: bytes) -> tuple[str, str] | None:
        """(node name, namespace) of the publisher `gid`, or None while discovery has not named it."""
        known = self._names.get(gid)
        if known is None and self._clock() - self._refreshed >= self.refresh_s:
            self._refreshed = self._clock()
            for g, node, namespace in self._lookup():
                if node not in UNKNOWN_NAMES:
                    self._names[bytes(g)] = (node, namespace)
            known = self._names.get(gid)
        return known

    @staticmethod
    def matches(sender: tuple[str, str], wanted: str) -> bool:
        """`wanted` is a node name ('policy_node': any namespace) or a fully qualified one ('/lab/policy_node')."""
        node, namespace = sender
        return full_name(namespace, node) == wanted if wanted.startswith("/") else node == wanted


class Pending:
    """The newest message of each publisher (topic, gid) that discovery has not named yet, kept until it is
    named (then played or refused) or until `timeout_s` has passed (then dropped); at most `limit` publishers
    (the oldest waiting goes), so a flood of new publishers cannot grow it."""

    def __init__(self, timeout_s: float = 2.0, limit: int = 16, clock: Callable[[], float] = time.monotonic):
        self.timeout_s, self.limit, self._clock = timeout_s, limit, clock
        self._items: dict[tuple[str, bytes], tuple[object, float]] = {}

    def hold(self, topic: str, gid: bytes, message) -> None:
        self._items.pop((topic, gid), None)
        self._items[(topic, gid)] = (message, self._clock())
        while len(self._items) > self.limit:
            del self._items[next(iter(self._items))]

    def discard(self, topic: str, gid: bytes) -> None:
        """Forget the message held from `gid` on `topic` (a newer one from that publisher was named)."""
        self._items.pop((topic, gid), None)

    def take(self, identity: dict[str, SenderIdentity]):
        """Yield (topic, sender or None, message) for each held message that was named (sender) or timed out
        (None), oldest first; the rest stay."""
        for (topic, gid), (message, since) in list(self._items.items()):
            sender = identity[topic].name(gid)
            if sender is not None or self._clock() - since > self.timeout_s:
                del self._items[(topic, gid)]
                yield topic, sender, message

    def __len__(self) -> int:
        return len(self._items)
