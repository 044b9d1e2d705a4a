"""Every live WhatsAppInstance this replica knows, with its state held once.

Not a kopf index: kopf holds every handler back until its indices are complete, a wait that grows
with the square of the object count (docs/architecture.md, "Probing").
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from typing import Any

from whatsapp_operator.core.driver_status import driver_status
from whatsapp_operator.core.resources import InstanceKey, InstanceSpec
from whatsapp_operator.core.state import Condition, InstanceState
from whatsapp_operator.core.status import InstanceStatus


@dataclasses.dataclass(slots=True)
class Member:
    """One instance: its spec (from watch events) and its state. The rest belongs to the prober that
    tracks the instance, and survives that prober's restart; while no prober tracks it, watch events
    (another replica's writes) refresh it."""

    spec: InstanceSpec
    state: InstanceState
    db_condition: Condition | None  # the mirror's verdict, condition DatabaseSynced
    pair_handled: str | None  # the last pair-requested-at annotation answered
    written: InstanceStatus  # what `.status` was made from, as far as this replica knows
    # The status API's last answer and what it was made from: polled every few seconds by the
    # driver's app, it is encoded again only once the state or the spec is another object.
    answered: tuple[InstanceState, InstanceSpec, bytes] | None = None

    @classmethod
    def read(cls, spec: InstanceSpec, status: Mapping[str, Any]) -> Member:
        member = cls(spec, InstanceState(), None, None, InstanceStatus.read(status))
        member.reset()
        return member

    def answer(self) -> bytes:
        """The status API's body for this instance (core.driver_status, JSON)."""
        answered = self.answered
        if answered is None or answered[0] is not self.state or answered[1] is not self.spec:
            body = json.dumps(driver_status(self.spec.instance_name, self.state)).encode()
            answered = self.answered = (self.state, self.spec, body)
        return answered[2]

    def reset(self) -> None:
        """Take up the state `.status` shows. DatabaseSynced is this process's mirror's to say: a
        condition an earlier run left is dropped at the next write, unless the mirror says it again."""
        self.state, self.db_condition, self.pair_handled = self.written.state, None, self.written.pair_handled


class Fleet:
    def __init__(self) -> None:
        self._members: dict[InstanceKey, Member] = {}
        # The same instances by their name on Evolution, which is all a webhook names, and by their
        # driverId, which is all the status API is asked about: one lookup per request, whatever the size.
        self._by_evolution_name: dict[str, tuple[InstanceKey, ...]] = {}
        self._by_driver: dict[str, tuple[InstanceKey, ...]] = {}

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[Member]:
        return iter(self._members.values())

    def get(self, key: InstanceKey) -> Member | None:
        return self._members.get(key)

    def seen(self, spec: InstanceSpec, status: Mapping[str, Any], *, tracked: bool) -> tuple[Member, bool]:
        """A watch event: the member, and whether it is new or its spec changed. A tracked instance's
        status is this replica's own write, so only its spec can be news."""
        member = self._members.get(spec.key)
        if member is None:
            member = self._members[spec.key] = Member.read(spec, status)
            self._index(spec)
            return member, True
        changed = member.spec != spec
        if changed:
            self._unindex(member.spec)
            self._index(spec)
            member.spec = spec
        if not tracked:
            written = InstanceStatus.read(status)
            if written != member.written:
                member.written = written
                member.reset()
        return member, changed

    def gone(self, key: InstanceKey) -> None:
        member = self._members.pop(key, None)
        if member is not None:
            self._unindex(member.spec)

    def of_server(self, namespace: str, server: str) -> list[Member]:
        return [m for m in self._members.values() if m.spec.namespace == namespace and m.spec.server == server]

    def named(self, instance_name: str) -> tuple[InstanceKey, ...]:
        """The instances whose Evolution instance has this name (usually one, in sorted order)."""
        return self._by_evolution_name.get(instance_name, ())

    def of_driver(self, driver_id: str) -> list[Member]:
        """The instances of this driver (usually one; the status API refuses to choose between two)."""
        return [self._members[key] for key in self._by_driver.get(driver_id, ())]

    def _index(self, spec: InstanceSpec) -> None:
        _add(self._by_evolution_name, spec.instance_name, spec.key)
        _add(self._by_driver, spec.driver_id, spec.key)

    def _unindex(self, spec: InstanceSpec) -> None:
        _remove(self._by_evolution_name, spec.instance_name, spec.key)
        _remove(self._by_driver, spec.driver_id, spec.key)


def _add(index: dict[str, tuple[InstanceKey, ...]], value: str, key: InstanceKey) -> None:
    index[value] = tuple(sorted({*index.get(value, ()), key}))


def _remove(index: dict[str, tuple[InstanceKey, ...]], value: str, key: InstanceKey) -> None:
    keys = tuple(k for k in index.get(value, ()) if k != key)
    if keys:
        index[value] = keys
    else:
        index.pop(value, None)
