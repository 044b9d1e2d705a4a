"""The operator's /metrics as Prometheus reads them, parsed with prometheus-client's own parser."""

from __future__ import annotations

import dataclasses

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from whatsapp_operator.engine.runtime import Runtime


@dataclasses.dataclass(frozen=True)
class Scrape:
    samples: list[Sample]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named `name` whose labels include `labels`: 0 when none."""
        return sum(s.value for s in self.samples if s.name == name and labels.items() <= s.labels.items())

    def by(self, name: str, label: str, **labels: str) -> dict[str, float]:
        """`value(name, **labels)` for each value of `label` exported."""
        return {key: self.value(name, **labels, **{label: key}) for key in self.label_values(name, label)}

    def label_values(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples if s.name == name and label in s.labels}

    def names(self) -> set[str]:
        return {s.name for s in self.samples}


async def scrape(runtime: Runtime) -> Scrape:
    assert runtime.metrics_url is not None, "the harness's operators serve metrics on a free port"
    async with httpx.AsyncClient() as client:
        text = (await client.get(runtime.metrics_url)).raise_for_status().text
    return Scrape([sample for family in text_string_to_metric_families(text) for sample in family.samples])
