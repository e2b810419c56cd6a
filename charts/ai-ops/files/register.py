"""Create or update the chart's own custom resources: run by a post-install/post-upgrade hook Job.

Helm resolves every manifest of a release against the API server's discovery before creating any, and
its discovery cache does not learn about CRDs that the same release has just created. So custom
resources of our own CRDs (the bundled MCP servers' MCPServer objects, kopf's peering objects) cannot be
ordinary manifests, nor reliably hooks. This script creates them through the API with retries until
their CRDs are served.

Input: a JSON file with a list of {"plural": str, "mode": "replace" | "create", "object": {...}}.
"replace" makes an existing object's spec and labels equal to the manifest (status untouched); "create" leaves an existing object
alone (kopf keeps its peers in the peering object's status, which a replace would wipe).
Usage: python register.py OBJECTS.json [DEADLINE_SECONDS]
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

# Answers meaning "not served yet" while a CRD is being established, or the API server is busy.
RETRYABLE = {404, 429, 500, 502, 503, 504}
JSON_PATCH = "application/json-patch+json"


def _load_config() -> None:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


def register(api: client.CustomObjectsApi, entry: dict[str, Any]) -> str:
    """Create or update one object; returns what was done."""
    obj = entry["object"]
    group, version = obj["apiVersion"].split("/")
    plural = entry["plural"]
    name, namespace = obj["metadata"]["name"], obj["metadata"].get("namespace")
    where: dict[str, Any] = {"group": group, "version": version, "plural": plural}
    if namespace:
        where["namespace"] = namespace
    try:
        if namespace:
            api.create_namespaced_custom_object(body=obj, **where)
        else:
            api.create_cluster_custom_object(body=obj, **where)
        return "created"
    except ApiException as error:
        if error.status != 409:
            raise
    if entry.get("mode", "replace") == "create":
        return "kept"
    # A JSON patch replacing the whole spec and the labels: the object ends up equal to the manifest
    # (fields dropped from it are dropped too), and its status, written by the operator, is untouched.
    patch = [{"op": "add", "path": "/metadata/labels", "value": obj["metadata"].get("labels") or {}}]
    patch.append({"op": "add", "path": "/spec", "value": obj.get("spec") or {}})
    # Said explicitly: the client sends a custom object's patch as a merge patch, which a list is not.
    if namespace:
        api.patch_namespaced_custom_object(name=name, body=patch, _content_type=JSON_PATCH, **where)
    else:
        api.patch_cluster_custom_object(name=name, body=patch, _content_type=JSON_PATCH, **where)
    return "replaced"


def main(argv: list[str]) -> int:
    with open(argv[1]) as file:
        entries = json.load(file)
    deadline = time.monotonic() + (float(argv[2]) if len(argv) > 2 else 180.0)
    _load_config()
    api = client.CustomObjectsApi()
    for entry in entries:
        meta = entry["object"]["metadata"]
        what = f"{entry['object']['kind']} {meta.get('namespace', '')}/{meta['name']}".replace(" /", " ")
        while True:
            try:
                print(f"{what}: {register(api, entry)}", flush=True)
                break
            except ApiException as error:
                if error.status not in RETRYABLE or time.monotonic() > deadline:
                    print(f"{what}: {error.status} {error.reason}: {error.body}", file=sys.stderr, flush=True)
                    return 1
            except (OSError, urllib3.exceptions.HTTPError) as error:  # the API server is not reachable yet
                if time.monotonic() > deadline:
                    print(f"{what}: {error}", file=sys.stderr, flush=True)
                    return 1
            time.sleep(2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
