"""The demo's human-readable summary (the run without --json): test_demo.py's runs read the JSON, so
the printed lines are checked here, on a summary shaped as a run leaves it, at no run's cost."""

from __future__ import annotations

from rich.console import Console

from whatsapp_operator.devkit.demo import Driver, DriverOutcome, Summary, print_summary

DAVI = Driver(name="driver-davi", resource="driver-davi", phone="+5541992345678", script="disconnect 401 at 8 s")
LOGGED_OUT = [("event", "logged_out", "delivered"), ("whatsapp", "logged_out", "delivered")]


def summary(metrics: dict[str, object]) -> Summary:
    davi = DriverOutcome(
        driver=DAVI,
        created=True,
        phase="LoggedOut",
        phases=["Connected", "LoggedOut"],
        forced_logouts=0,
        restarts=0,
        notify_phases=["LoggedOut"],
        notifications=LOGGED_OUT,
        db_status="disconnected",
    )
    webhooks = {"received": 3, "processed": 3, "dead": 0}
    return Summary([davi], "none", transitions=2, status_patches=4, webhooks=webhooks, errors=[], metrics=metrics)


def printed(s: Summary) -> str:
    console = Console(record=True, width=200)
    print_summary(console, s)
    return console.export_text()


def test_the_summary_prints_the_scraped_metrics_by_phase_channel_and_result() -> None:
    # The shape `scrape` gives: notifications list only the results that happened, webhooks every
    # result the operator counted (summed over events), 0 included.
    metrics = {
        "instances": {"Pending": 0, "Connected": 0, "LoggedOut": 1},
        "forced_logouts": 0,
        "notifications": {"whatsapp": {"delivered": 1}, "event": {"delivered": 1, "retried": 2}},
        "webhooks": {"accepted": 3, "processed": 3, "duplicate": 0},
    }
    text = printed(summary(metrics))
    assert "metrics (scraped at the end): instances LoggedOut 1; forced logouts 0" in text
    assert "  notifications event delivered 1, event retried 2, whatsapp delivered 1;" in text
    assert "; webhooks accepted 3, processed 3\n" in text
    assert "notifications (outbox): event delivered 1, whatsapp delivered 1" in text
