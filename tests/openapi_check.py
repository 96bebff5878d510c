#!/usr/bin/env python3
"""Checks docs/openapi.yaml (tests/openapi.rs runs this).

usage: openapi_check.py SPEC.yaml SAMPLES.json

1. The spec is a valid OpenAPI 3.1 document (openapi-spec-validator).
2. Every sample -- {"method", "path", "status", "content_type", "body"} recorded from the
   real server, with "path" the spec's path template -- has a response described for its
   method and status, and its body validates against that response's schema (jsonschema,
   draft 2020-12, $refs resolved within the spec).
Prints one line per sample and exits 1 if any failed.
"""
import json
import sys

import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012


class UniqueKeys(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (YAML keeps the last
    silently, so a second "409" would hide the first)."""


def _mapping(loader, node, deep=False):
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
    twice = sorted({str(k) for k in keys if keys.count(k) > 1})
    if twice:
        raise yaml.constructor.ConstructorError(None, None, f"key given twice: {twice}", node.start_mark)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def resolve(spec, node):
    """Follows a local $ref of a response object."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = spec
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def main():
    spec = yaml.load(open(sys.argv[1]), UniqueKeys)
    samples = json.load(open(sys.argv[2]))
    validate(spec)
    print("spec: valid OpenAPI", spec["openapi"])
    failed = 0
    for s in samples:
        what = f'{s["method"]} {s["path"]} {s["status"]}'
        op = spec["paths"].get(s["path"], {}).get(s["method"].lower())
        response = None if op is None else op["responses"].get(str(s["status"]))
        if response is None:
            print(f"FAIL {what}: not described")
            failed += 1
            continue
        response = resolve(spec, response)
        content = response.get("content", {}).get(s["content_type"])
        if content is None:
            print(f'FAIL {what}: no {s["content_type"]} content described')
            failed += 1
            continue
        root = dict(spec, **{"$id": "urn:gslbd:openapi", "x-check": content["schema"]})
        registry = Registry().with_resource("urn:gslbd:openapi", Resource.from_contents(root, default_specification=DRAFT202012))
        validator = Draft202012Validator({"$ref": "urn:gslbd:openapi#/x-check"}, registry=registry)
        body = s["body"]
        if s["content_type"] == "application/json":
            body = json.loads(body)
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
        if errors:
            failed += 1
            for e in errors[:5]:
                print(f'FAIL {what}: {"/".join(map(str, e.path))}: {e.message}')
        else:
            print(f"ok   {what}")
    print(f"openapi: {len(samples) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
