"""docs/observability.md's metric table is the metrics' interface: every family the operator exports,
with its type and label names, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from whatsapp_operator.core.resources import ServerSpec
from whatsapp_operator.devkit.manifests import server_manifest
from whatsapp_operator.engine.prober import ServerProber
from whatsapp_operator.engine.runtime import Runtime
from whatsapp_operator.engine.settings import Config

DOC = Path(__file__).parents[3] / "docs" / "observability.md"
Family = tuple[str, frozenset[str]]  # type, label names


def documented() -> dict[str, Family]:
    rows = re.findall(r"^\| `(whatsapp_operator_\w+)` \| (\w+) \|([^|]*)\|", DOC.read_text(), flags=re.MULTILINE)
    assert len(rows) == len({name for name, _, _ in rows}), "a metric has two lines"
    return {name: (kind, frozenset(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}


async def exported() -> dict[str, Family]:
    """What a running operator's /metrics holds once every family has a sample: a server is probed,
    its sender was looked at, a webhook came."""
    runtime = Runtime(Config(kube_server="http://127.0.0.1:1", metrics_listen="127.0.0.1:0"))
    spec = ServerSpec.parse(server_manifest("http://127.0.0.1:1")["spec"])
    prober = ServerProber(
        namespace="ns", name="evo", spec=spec, api_key="k", kube=runtime.kube, metrics=runtime.metrics.server("ns/evo")
    )
    runtime.prober_started(prober)
    prober.recorder.sender_ready(True, "SenderConnected", "the sender instance is open")
    runtime.metrics.webhook("connection.update", "accepted")
    runtime.metrics.watch(runtime)
    families: dict[str, Family] = {}
    for family in text_string_to_metric_families(runtime.metrics.exposition().decode()):
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels = {label for sample in family.samples for label in sample.labels if label != "le"}  # le: buckets
        families[name] = (family.type, frozenset(labels))
    return families


async def test_the_metric_table_lists_every_exported_family_with_its_type_and_labels() -> None:
    families = await exported()
    # prometheus-client adds a `<name>_created` gauge to each counter and histogram, with its labels:
    # the doc says so once, not per metric.
    created = {name: family for name, family in families.items() if name.endswith("_created")}
    for name, (_, labels) in created.items():
        base = name.removesuffix("_created")
        assert families.get(f"{base}_total", families.get(base, ("", None)))[1] == labels, name
    assert "`_created`" in DOC.read_text()
    assert documented() == {name: family for name, family in families.items() if name not in created}
