"""Client for the Evolution API v2.3.6: typed answers, typed errors, retries and a circuit breaker per server."""

from whatsapp_operator.evolution.client import EvolutionClient
from whatsapp_operator.evolution.errors import (
    BadRequest,
    CircuitOpen,
    EvolutionError,
    EvolutionTimeout,
    EvolutionUnavailable,
    InstanceNotFound,
    MalformedResponse,
    NameInUse,
    NotConnected,
    NumberNotOnWhatsApp,
    OperationFailed,
    Unauthorized,
    UnexpectedResponse,
)
from whatsapp_operator.evolution.models import (
    ConnectionState,
    ConnectResult,
    CreatedInstance,
    InstanceInfo,
    LiveState,
    QRCode,
    SentMessage,
    WebhookSettings,
)

__all__ = [
    "BadRequest",
    "CircuitOpen",
    "ConnectResult",
    "ConnectionState",
    "CreatedInstance",
    "EvolutionClient",
    "EvolutionError",
    "EvolutionTimeout",
    "EvolutionUnavailable",
    "InstanceInfo",
    "InstanceNotFound",
    "LiveState",
    "MalformedResponse",
    "NameInUse",
    "NotConnected",
    "NumberNotOnWhatsApp",
    "OperationFailed",
    "QRCode",
    "SentMessage",
    "Unauthorized",
    "UnexpectedResponse",
    "WebhookSettings",
]
