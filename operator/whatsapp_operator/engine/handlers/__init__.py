"""kopf handlers, one module per resource, all on one registry so the operator can be embedded."""

import kopf

registry = kopf.OperatorRegistry()

# Importing the modules registers their handlers.
from whatsapp_operator.engine.handlers import instances, operator, servers  # noqa: E402

__all__ = ["instances", "operator", "registry", "servers"]
