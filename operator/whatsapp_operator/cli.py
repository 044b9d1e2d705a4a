"""The `whatsapp-operator` command: one subcommand per module, each owning its own flags."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> (module exposing add_arguments(parser) and run(args) -> int, help text)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("whatsapp_operator.engine.runner", "run the operator"),
    "simulator": ("whatsapp_operator.devkit.simulator.cli", "run the Evolution API simulator"),
    "migrate": ("whatsapp_operator.db.migrate", "apply the database migrations"),
    "history": ("whatsapp_operator.db.history", "print a driver's phase transitions and uptime"),
    "webhooks": ("whatsapp_operator.webhooks.cli", "look at the webhook inbox and replay dead webhooks"),
    "notifications": ("whatsapp_operator.db.outbox_cli", "list driver notifications and replay dead deliveries"),
    "status": ("whatsapp_operator.fleet_status", "print the fleet: instances per phase per server, the unhealthy ones"),
    "demo": ("whatsapp_operator.devkit.demo", "run the whole job on this machine against a scenario"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="whatsapp-operator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:  # building the parser imports every command's module: Ctrl-C may land there too
        args = build_parser().parse_args(argv)
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
