"""What the operator logs: kopf's handler and format, the libraries that speak per request or per
object quieted to their warnings unless `--verbose` asks for their detail, and a driver's phone
number taken out of whatever reaches the handler.

Nothing is logged per probe at the default level: a steady fleet of 10,000 instances would otherwise
print hundreds of lines a second (httpx logs every request at INFO), each one saying nothing changed.
"""

from __future__ import annotations

import logging
import re

import kopf

# Libraries whose INFO is one line per request or per handled object.
CHATTY = ("httpx", "httpcore", "aiohttp.access", "aiohttp.client", "kopf.objects")

# Where a phone number shows in a record: connect's `?number=` (httpx's request lines) and a
# resource's `spec.phoneNumber` (kopf's debug dumps of the bodies it handles).
_PHONE = re.compile(r"""(?P<key>[?&]number=)[^&'"\s]*|(?P<field>(?P<q>['"])phoneNumber(?P=q): ?(?P=q))[^'"]*""")


def configure(*, verbose: bool, log_format: str) -> None:
    """Logging for `whatsapp-operator run`: kopf's stream handler on the root logger, redacting."""
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.PLAIN)
    set_levels(verbose=verbose)
    for handler in logging.getLogger().handlers:
        handler.addFilter(Redactor())


def set_levels(*, verbose: bool) -> None:
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)


class Redactor(logging.Filter):
    """Replaces phone numbers in a record's message with `<redacted>`; on a handler, so that it sees
    every logger's records (a logger's own filters miss its children's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _PHONE.sub(lambda m: f"{m['key'] or m['field']}<redacted>", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True
