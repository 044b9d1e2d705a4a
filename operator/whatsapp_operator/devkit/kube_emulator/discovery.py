"""What the emulator serves, as discovery documents say it and as kubectl names it: the resource
types of a CRD, an APIResourceList, the aggregated APIGroupDiscoveryList, a resource by any of its
names."""


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


AGGREGATED_GROUP = "apidiscovery.k8s.io"
# What a 1.32 API server answers aggregated discovery in; v2beta1 is still served (gone in 1.33).
AGGREGATED_VERSIONS = ("v2", "v2beta1")


def aggregated_version(accept: str) -> str | None:
    """The apidiscovery.k8s.io version the Accept header takes first, or None where it takes plain
    JSON first: the API server answers the first media type it can serve, in the client's order."""
    for clause in accept.split(","):
        media, *parameters = (part.strip() for part in clause.split(";"))
        options = dict(parameter.partition("=")[::2] for parameter in parameters)
        if "as" not in options:
            return None
        if (
            media == "application/json"
            and options["as"] == "APIGroupDiscoveryList"
            and options.get("g") == AGGREGATED_GROUP
            and options.get("v") in AGGREGATED_VERSIONS
        ):
            return options["v"]
    return None


def aggregated_discovery(types: Iterable[ResourceType], *, core: bool, version: str) -> Body:
    """The APIGroupDiscoveryList of `/api` (core) or `/apis` (every other group), restructured from
    the APIResourceLists as the API server converts them: a subresource goes inside its resource."""
    types = list(types)
    group_versions = dict.fromkeys((t.group, t.version) for t in types if (t.group == "") == core)
    groups: dict[str, list[Body]] = {}
    for group, group_version in group_versions:
        resources = _resource_discoveries(types, group, group_version)
        groups.setdefault(group, []).append({"version": group_version, "resources": resources, "freshness": "Current"})
    items = [{"metadata": {"name": group} if group else {}, "versions": versions} for group, versions in groups.items()]
    listing = {"kind": "APIGroupDiscoveryList", "apiVersion": f"{AGGREGATED_GROUP}/{version}", "metadata": {}}
    return listing | {"items": items}


def _resource_discoveries(types: list[ResourceType], group: str, version: str) -> list[Body]:
    # A CRD's responseKind names its group and version; a built-in's leaves them empty, as the
    # APIResource the API server converts it from does.
    custom = {t.plural for t in types if t.group == group and t.version == version and t.custom}
    resources: dict[str, Body] = {}
    for entry in resource_list(types, group, version)["resources"]:
        plural, _, subresource = entry["name"].partition("/")
        named = plural in custom
        kind = {"group": group if named else "", "version": version if named else "", "kind": entry["kind"]}
        if subresource:
            sub = {"subresource": subresource, "responseKind": kind, "verbs": entry["verbs"]}
            resources[plural].setdefault("subresources", []).append(sub)
            continue
        resources[plural] = {
            "resource": plural,
            "responseKind": kind,
            "scope": "Namespaced" if entry["namespaced"] else "Cluster",
            "singularResource": entry["singularName"],
            "verbs": entry["verbs"],
        } | {key: entry[key] for key in ("shortNames", "categories") if key in entry}
    return list(resources.values())


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
