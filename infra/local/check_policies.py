"""IAM gate for template.yaml, run by `make lint-template`.

Expands the SAM template with aws-sam-translator (what CloudFormation's
AWS::Serverless transform runs) and checks the IAM roles it generates:

- no managed policy beyond basic logging and X-Ray (a SAM SQS or DynamoDB
  event would attach AWSLambdaSQSQueueExecutionRole or
  AWSLambdaDynamoDBExecutionRole, which grant on Resource "*");
- no inline statement on Resource "*" except for actions that have no
  resource-level permissions (listed below with the function using them);
- every function denies UpdateItem, DeleteItem and BatchWriteItem on AUDIT#
  items (audit entries are append-only);
- a role assumed by another service (EventBridge Scheduler's, which SAM
  makes for a ScheduleV2 event: it may only invoke the function) grants no
  DynamoDB action at all.

Usage: python infra/local/check_policies.py template.yaml
"""

import json
import os
import sys

from cfnlint.decode import decode
from samtranslator.translator.transform import transform

ALLOWED_MANAGED = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}
# Actions IAM cannot scope to a resource.
ALLOWED_STAR_ACTIONS = {
    "cloudwatch:GetMetricData",  # AdminFunction: system metrics
    "dynamodb:ListStreams",  # StreamsFunction: the stream event source mapping
}
AUDIT_DENY = {"dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}


class NoManagedPolicies:
    def load(self):
        return {}


def as_list(value):
    return value if isinstance(value, list) else [value]


def main(path):
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template, matches = decode(path)
    if matches:
        sys.exit(f"{path}: cannot parse: {matches}")
    template = json.loads(json.dumps(template, default=str))
    for resource in template["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            # What `sam package` leaves there; the translator wants an S3 URI.
            resource["Properties"]["CodeUri"] = "s3://bucket/key"
    out = transform(template, {}, NoManagedPolicies())

    problems = []
    roles = {k: v for k, v in out["Resources"].items() if v["Type"] == "AWS::IAM::Role"}
    for name, role in sorted(roles.items()):
        props = role["Properties"]
        for arn in props.get("ManagedPolicyArns", []):
            if arn not in ALLOWED_MANAGED:
                problems.append(f"{name}: managed policy {arn}")
        audit_denied = set()
        services = set()
        for st in as_list(props.get("AssumeRolePolicyDocument", {}).get("Statement", [])):
            services |= set(as_list(st.get("Principal", {}).get("Service", [])))
        function_role = "lambda.amazonaws.com" in services
        for policy in props.get("Policies", []):
            for st in as_list(policy["PolicyDocument"]["Statement"]):
                actions = set(as_list(st.get("Action", [])))
                resources = as_list(st.get("Resource", []))
                if st.get("Effect") == "Allow" and "*" in resources and not actions <= ALLOWED_STAR_ACTIONS:
                    problems.append(f"{name}: {st.get('Sid')} allows {sorted(actions - ALLOWED_STAR_ACTIONS)} on Resource *")
                leading = st.get("Condition", {}).get("ForAnyValue:StringLike", {}).get("dynamodb:LeadingKeys", [])
                if st.get("Effect") == "Deny" and "AUDIT#*" in as_list(leading):
                    audit_denied |= actions
                if not function_role and st.get("Effect") == "Allow" and any(a.startswith("dynamodb:") for a in actions):
                    problems.append(f"{name}: a role of {sorted(services)} allows {sorted(actions)}")
        if function_role and not AUDIT_DENY <= audit_denied:
            problems.append(f"{name}: AUDIT# items not denied {sorted(AUDIT_DENY - audit_denied)}")

    for problem in problems:
        print(f"check_policies: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"check_policies: {len(roles)} generated roles: no wildcard resources beyond {sorted(ALLOWED_STAR_ACTIONS)}, AUDIT# writes denied")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml")
