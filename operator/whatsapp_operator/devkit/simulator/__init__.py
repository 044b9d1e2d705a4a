"""An Evolution API v2.3.6 simulator for tests, demos and benchmarks (docs/simulator.md)."""

from whatsapp_operator.devkit.simulator.core import Simulator
from whatsapp_operator.devkit.simulator.faults import Fault
from whatsapp_operator.devkit.simulator.instance import ActionNotApplicable, SimInstance, Timings
from whatsapp_operator.devkit.simulator.receiver import ReceivedWebhook, WebhookSink
from whatsapp_operator.devkit.simulator.records import RecordedRequest, SentRecord
from whatsapp_operator.devkit.simulator.scenario import Scenario, ScenarioError
from whatsapp_operator.devkit.simulator.webhooks import Delivery, RetryPolicy

__all__ = [
    "ActionNotApplicable",
    "Delivery",
    "Fault",
    "ReceivedWebhook",
    "RecordedRequest",
    "RetryPolicy",
    "Scenario",
    "ScenarioError",
    "SentRecord",
    "SimInstance",
    "Simulator",
    "Timings",
    "WebhookSink",
]
