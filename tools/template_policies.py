#!/usr/bin/env python3
"""Prints the IAM policy each gc-archive function runs with, resolved from template.yaml.

Loads the template with cfn-lint's decoder (so `!Ref`, `!Sub`, `!If` ... come back as
`{"Ref": ...}`, `{"Fn::Sub": ...}`), evaluates its `Conditions` for the given parameter values
(the template's defaults where a value is not given) and resolves the inline `Policies` of each
function's execution role:

    ArchiveOnEventRole -> archive-on-event
    ChunkRecordingRole -> chunk-recording
    RecordingSweepRole -> recording-sweep
    StorageRouterRole  -> storage-router

Usage:

    template_policies.py TEMPLATE --params PARAMS.json --resources RESOURCES.json
    template_policies.py TEMPLATE < INPUT.json     # {"parameters": {...}, "resources": {...}}

PARAMS.json maps parameter names to values, e.g. {"GenesysOrgId": "5a2b...", "KmsKeyArn": ""}.
It may also override the pseudo parameters `AWS::Partition` (default aws), `AWS::Region`
(us-east-1), `AWS::AccountId` (123456789012), `AWS::StackName` (gc-archive) and
`AWS::URLSuffix` (amazonaws.com). Values are checked against the parameter's `AllowedValues` and
`AllowedPattern`, as CloudFormation would.

RESOURCES.json maps logical resource ids to their attributes: "Ref" is what `!Ref Id` returns,
any other key what `!GetAtt Id.Key` returns, e.g.
{"ArchiveQueue": {"Ref": "https://sqs.../gc-archive-archive", "Arn": "arn:aws:sqs:...:gc-archive-archive"}}.

Supported: `Ref` (parameters, pseudo parameters, `AWS::NoValue`, logical ids), `Fn::GetAtt`,
`Fn::Sub` (string and list form), `Fn::If`, `Fn::Join`, and in `Conditions` `Fn::Equals`,
`Fn::Not`, `Fn::And`, `Fn::Or` and `Condition`. Only what a taken branch needs is resolved.

Prints one JSON object on stdout:

    {"archive-on-event": {"Version": "2012-10-17", "Statement": [...]}, "chunk-recording": {...},
     "recording-sweep": {...}}

with every inline policy of a role merged into one document's `Statement` list (statements keep
their `Sid`). Exit status 0 on success; 2 with a message on stderr naming the problem (unknown
intrinsic, unresolved reference, unknown or invalid parameter, a role this tool cannot see all
of); 1 for a bad command line.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from cfnlint.decode import cfn_yaml

ROLES = {
    "ArchiveOnEventRole": "archive-on-event",
    "ChunkRecordingRole": "chunk-recording",
    "RecordingSweepRole": "recording-sweep",
    "StorageRouterRole": "storage-router",
    "EventStreamRole": "event-stream",
    "UploadProxyRole": "upload-proxy",
}

PSEUDO_DEFAULTS = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "gc-archive",
    "AWS::URLSuffix": "amazonaws.com",
}


class TemplateError(Exception):
    """A problem in the template or the inputs; reported with exit status 2."""


class _NoValue:
    """`!Ref AWS::NoValue`: removes the property or list element that holds it."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


def plain(value: Any) -> Any:
    """cfn-lint's node classes as plain dicts, lists and strings."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def scalar(value: Any) -> str:
    """A parameter value as CloudFormation hands it to `Ref`: always a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Resolver:
    def __init__(self, template: dict, params: dict, resources: dict):
        self.template = template
        self.resources = resources
        declared = template.get("Parameters", {})
        unknown = [p for p in params if p not in declared and p not in PSEUDO_DEFAULTS]
        if unknown:
            raise TemplateError(f"unknown parameters: {', '.join(sorted(unknown))}")
        self.values: dict[str, str] = dict(PSEUDO_DEFAULTS)
        for name, spec in declared.items():
            if name in params:
                value = scalar(params[name])
            elif "Default" in spec:
                value = scalar(spec["Default"])
            else:
                continue  # an error only if something references it
            allowed = spec.get("AllowedValues")
            if allowed is not None and value not in [scalar(a) for a in allowed]:
                raise TemplateError(f"parameter {name}={value!r} is not one of its AllowedValues")
            pattern = spec.get("AllowedPattern")
            if pattern is not None and not re.fullmatch(pattern, value):
                raise TemplateError(f"parameter {name}={value!r} does not match AllowedPattern {pattern}")
            self.values[name] = value
        for name in PSEUDO_DEFAULTS:
            if name in params:
                self.values[name] = scalar(params[name])
        self.conditions: dict[str, bool] = {}
        self._evaluating: set[str] = set()

    # -- references -------------------------------------------------------------------------

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.values:
            spec = self.template.get("Parameters", {}).get(name, {})
            if spec.get("Type") == "CommaDelimitedList":
                # Ref of a list parameter is the list (its items trimmed, as CloudFormation does).
                return [v.strip() for v in self.values[name].split(",")]
            return self.values[name]
        if name in self.template.get("Parameters", {}):
            raise TemplateError(f"parameter {name} has no value and no Default")
        if name in self.template.get("Resources", {}):
            attrs = self.resources.get(name, {})
            if "Ref" not in attrs:
                raise TemplateError(f"unresolved reference: Ref {name} (not in the resources map)")
            return attrs["Ref"]
        raise TemplateError(f"unresolved reference: Ref {name}")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        if logical_id not in self.template.get("Resources", {}):
            raise TemplateError(f"unresolved reference: GetAtt {logical_id}.{attribute} (no such resource)")
        attrs = self.resources.get(logical_id, {})
        if attribute not in attrs:
            raise TemplateError(
                f"unresolved reference: GetAtt {logical_id}.{attribute} (not in the resources map)"
            )
        return attrs[attribute]

    # -- conditions -------------------------------------------------------------------------

    def condition(self, name: str) -> bool:
        if name in self.conditions:
            return self.conditions[name]
        definitions = self.template.get("Conditions", {})
        if name not in definitions:
            raise TemplateError(f"unresolved reference: Condition {name}")
        if name in self._evaluating:
            raise TemplateError(f"condition {name} refers to itself")
        self._evaluating.add(name)
        value = self.boolean(definitions[name])
        self._evaluating.discard(name)
        self.conditions[name] = value
        return value

    def boolean(self, expr: Any) -> bool:
        if isinstance(expr, dict) and len(expr) == 1:
            (fn, arg), = expr.items()
            if fn == "Condition":
                return self.condition(arg)
            if fn == "Fn::Equals":
                left, right = (self.resolve(a) for a in arg)
                return scalar(left) == scalar(right)
            if fn == "Fn::Not":
                return not self.boolean(arg[0])
            if fn == "Fn::And":
                return all(self.boolean(a) for a in arg)
            if fn == "Fn::Or":
                return any(self.boolean(a) for a in arg)
            raise TemplateError(f"unknown intrinsic in a condition: {fn}")
        raise TemplateError(f"not a condition expression: {json.dumps(expr)}")

    # -- values -----------------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key.startswith("Fn::"):
                return self.intrinsic(key, arg)
        out = {}
        for k, v in value.items():
            r = self.resolve(v)
            if r is not NO_VALUE:
                out[k] = r
        return out

    def intrinsic(self, fn: str, arg: Any) -> Any:
        if fn == "Fn::GetAtt":
            if isinstance(arg, str):
                logical_id, _, attribute = arg.partition(".")
            else:
                logical_id, attribute = arg[0], self.resolve(arg[1])
            return self.get_att(logical_id, attribute)
        if fn == "Fn::If":
            name, when_true, when_false = arg
            return self.resolve(when_true if self.condition(name) else when_false)
        if fn == "Fn::Join":
            delimiter, items = arg
            items = self.resolve(items)
            if not isinstance(items, list):
                raise TemplateError(f"Fn::Join needs a list, got {json.dumps(items)}")
            return self.resolve(delimiter).join(scalar(i) for i in items)
        if fn == "Fn::Sub":
            if isinstance(arg, str):
                return self.substitute(arg, {})
            text, variables = arg
            return self.substitute(text, {k: self.resolve(v) for k, v in variables.items()})
        raise TemplateError(f"unknown intrinsic: {fn}")

    def substitute(self, text: str, variables: dict) -> str:
        def one(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return scalar(variables[name])
            if "." in name and name.split(".", 1)[0] in self.template.get("Resources", {}):
                logical_id, attribute = name.split(".", 1)
                return scalar(self.get_att(logical_id, attribute))
            value = self.ref(name)
            if value is NO_VALUE:
                raise TemplateError(f"Fn::Sub cannot substitute AWS::NoValue in {text!r}")
            return scalar(value)

        return re.sub(r"\$\{([^}]*)\}", one, text)


def role_policies(template: dict, params: dict, resources: dict) -> dict:
    resolver = Resolver(template, params, resources)
    template_resources = template.get("Resources", {})
    result = {}
    for logical_id, function in ROLES.items():
        role = template_resources.get(logical_id)
        if role is None:
            raise TemplateError(f"resource {logical_id} is missing")
        # A role whose condition is false is not created: the function has no policy.
        if "Condition" in role and not resolver.condition(role["Condition"]):
            continue
        props = role.get("Properties", {})
        for hidden in ("ManagedPolicyArns", "PermissionsBoundary"):
            if hidden in props:
                raise TemplateError(f"{logical_id} has {hidden}, which this tool cannot resolve")
        statements = []
        for policy in resolver.resolve(props.get("Policies", [])):
            document = policy.get("PolicyDocument", {})
            listed = document.get("Statement", [])
            statements.extend(listed if isinstance(listed, list) else [listed])
        result[function] = {"Version": "2012-10-17", "Statement": statements}
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("template")
    parser.add_argument("--params", help="JSON file: parameter name -> value")
    parser.add_argument("--resources", help="JSON file: logical id -> {Ref, <attribute>...}")
    args = parser.parse_args(argv)
    try:
        if args.params is None and args.resources is None:
            given = json.load(sys.stdin)
            params, resources = given.get("parameters", {}), given.get("resources", {})
        else:
            params, resources = {}, {}
            if args.params:
                with open(args.params, encoding="utf-8") as f:
                    params = json.load(f)
            if args.resources:
                with open(args.resources, encoding="utf-8") as f:
                    resources = json.load(f)
        template = plain(cfn_yaml.load(args.template))
        policies = role_policies(template, params, resources)
    except TemplateError as e:
        print(f"template_policies: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError, cfn_yaml.CfnParseError) as e:
        print(f"template_policies: {e}", file=sys.stderr)
        return 2
    json.dump(policies, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
