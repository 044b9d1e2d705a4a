"""What the emulator serves, as discovery documents say it and as kubectl names it: the resource
types of a CRD, an APIResourceList, a resource by any of its names."""


from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from whatsapp_operator.devkit.kube_emulator.printing import AGE, NAME, Column
from whatsapp_operator.devkit.kube_emulator.resources import ResourceType
from whatsapp_operator.devkit.kube_emulator.schema import Body, Schema, api_error, now_rfc3339, structural_errors
from whatsapp_operator.devkit.kube_emulator.selectors import jsonpath_steps


def crd_types(crd: Mapping[str, Any]) -> list[ResourceType]:
    """The resource types a CustomResourceDefinition serves, refusing it as the API server would."""
    spec, names = crd["spec"], crd["spec"]["names"]
    served = []
    for version in spec["versions"]:
        openapi = version["schema"]["openAPIV3Schema"]
        errors = structural_errors(openapi)
        if errors:
            raise ValueError(f"{crd['metadata']['name']} {version['name']} is not structural: {errors}")
        columns = tuple(Column.from_crd(c) for c in version.get("additionalPrinterColumns", ()))
        for column in columns:
            jsonpath_steps(column.json_path)  # refuse what the printer could not evaluate
        if version.get("served", True):
            served.append(
                ResourceType(
                    group=spec["group"],
                    version=version["name"],
                    plural=names["plural"],
                    kind=names["kind"],
                    namespaced=spec["scope"] == "Namespaced",
                    singular=names.get("singular", names["kind"].lower()),
                    shortnames=tuple(names.get("shortNames", ())),
                    categories=tuple(names.get("categories", ())),
                    status_subresource="status" in version.get("subresources", {}),
                    custom=True,
                    schema=Schema(openapi),
                    columns=(NAME, *(columns or (AGE,))),
                )
            )
    return served


def established(crd: Mapping[str, Any]) -> Body:
    """The CRD as the API server stores it once its names are accepted."""
    spec, names = crd["spec"], crd["spec"]["names"]
    stored = copy.deepcopy(dict(crd))
    stored["status"] = {
        "acceptedNames": names,
        "storedVersions": [v["name"] for v in spec["versions"] if v.get("storage")],
        "conditions": [
            {"type": kind, "status": "True", "reason": reason, "message": "", "lastTransitionTime": now_rfc3339()}
            for kind, reason in (("NamesAccepted", "NoConflicts"), ("Established", "InitialNamesAccepted"))
        ],
    }
    return stored


def resource_list(types: Iterable[ResourceType], group: str, version: str) -> Body:
    """An APIResourceList as the API server writes it: a subresource is an entry of its own with
    no short names or categories, which kubectl then never takes for the resource."""
    served = [t for t in types if t.group == group and t.version == version]
    if not served:
        raise api_error(404, "NotFound", "the server could not find the requested resource")
    resources: list[Body] = []
    for rtype in served:
        entry = {"name": rtype.plural, "singularName": rtype.singular, "namespaced": rtype.namespaced}
        resources.append(
            entry
            | {"kind": rtype.kind, "verbs": sorted(rtype.verbs)}
            | ({"shortNames": list(rtype.shortnames)} if rtype.shortnames else {})
            | ({"categories": list(rtype.categories)} if rtype.categories else {})
        )
        if rtype.status_subresource:
            status = {"name": f"{rtype.plural}/status", "singularName": "", "namespaced": rtype.namespaced}
            resources.append(status | {"kind": rtype.kind, "verbs": ["get", "patch", "update"]})
    listing = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": rtype.api_version}
    return listing | {"resources": resources}


def resolve(types: Iterable[ResourceType], name: str) -> ResourceType:
    """A resource as kubectl finds it: by plural, singular, short name or kind (any case)."""
    wanted = name.lower()
    for rtype in types:
        if wanted in {rtype.plural, rtype.singular, rtype.kind.lower(), *rtype.shortnames} or wanted == rtype.qualified:
            return rtype
    raise LookupError(f"the server doesn't have a resource type {name!r}")


def lookup(types: Iterable[ResourceType], api_version: str, kind: str) -> ResourceType:
    """A resource by the apiVersion and kind of its objects."""
    for rtype in types:
        if rtype.api_version == api_version and rtype.kind == kind:
            return rtype
    raise LookupError(f"no matches for kind {kind!r} in version {api_version!r}")
