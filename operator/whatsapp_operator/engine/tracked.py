"""A prober's record of one instance it tracks: the fleet's member plus what only this prober run knows."""

from __future__ import annotations

import dataclasses
import datetime

from whatsapp_operator.core.pairing import CodeWatch
from whatsapp_operator.core.phases import Phase
from whatsapp_operator.core.resources import InstanceSpec
from whatsapp_operator.core.state import InstanceState, Observation
from whatsapp_operator.engine.fleet import Member


@dataclasses.dataclass(slots=True)
class Tracked:
    member: Member
    code: CodeWatch = dataclasses.field(default_factory=CodeWatch)
    exists: bool = False  # the Evolution instance is known to exist
    forced: bool = False  # the next recorded transition follows a forced logout
    webhook_checked: bool = False  # the Evolution instance's webhook is known to be ours, once per prober run
    phone_checked: str | None = None  # the spec.phoneNumber `phone_problem` was worked out for
    phone_problem: str | None = None  # what is wrong with it (None: nothing)
    # A webhook's news and when it was received, taken by the next probe instead of a look unless
    # the phase changed since (webhooks.news).
    news: tuple[Observation, datetime.datetime | None] | None = None
    closer_look: int = 0  # follow-up probes still due seconds apart (a logout or removal under way)
    live_at: float | None = None  # loop time of the next liveness check (engine.liveness)
    live_failures: int = 0  # failed liveness checks in a row, in memory: a lone failure writes nothing
    owner_jid: str | None = None  # the instance's own WhatsApp JID, which its checks ask about

    @classmethod
    def of(cls, member: Member) -> Tracked:
        return cls(member=member, exists=member.state.phase is not Phase.PENDING)

    @property
    def spec(self) -> InstanceSpec:
        return self.member.spec

    @property
    def state(self) -> InstanceState:
        return self.member.state
