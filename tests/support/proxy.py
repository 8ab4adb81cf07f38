#!/usr/bin/env python3
"""A recording, fault-injecting HTTP proxy in front of a moto server (stdlib, and boto3 to
read the emulator).

Usage: proxy.py UPSTREAM_PORT. Binds 127.0.0.1 on a free port and prints that port on the
first line of stdout. Every request is forwarded unchanged to 127.0.0.1:UPSTREAM_PORT,
except the control endpoints:

  POST /__proxy/config   JSON with any of the settings below (fields given replace the
                         current ones; counters and the random generator restart)
  GET  /__proxy/stats    JSON {calls: [{service, action, op, mutating, faulted, fault, id,
                         t, end}], held, held_call, epoch (the proxy's time.monotonic()
                         at its start or last reset: `t` and `end` count from it)}
  GET  /__proxy/inventory  JSON list of everything the emulator holds, tagged or not
                         ("kind id" lines, sorted; see `inventory`)
  POST /__proxy/release  deliver the held response(s) to the client after all
  POST /__proxy/reset    forget the calls and the token cache, drop a held response (the
                         client never gets it), default config

Settings:

  fault_rate, seed       throttle this share of calls (decided BEFORE forwarding: a faulted
                         call never reaches the emulator), in each protocol's dialect
  delay_ms               sleep before handling each call
  slow_ops {op: ms}      hold each call of `op` this long before forwarding it: what it
                         deletes stays in the emulator meanwhile, as AWS takes minutes to
                         terminate an instance or delete a database; a delete of what
                         depends on it, sent before this one's answer, meets it there
  hold_after_mutations N forward the N-th mutating call, then hold its response: held =
                         true; the caller can be killed right after the cloud accepted it
  hold_call {op, nth}    the same for the nth call (any call) of operation `op`; with
                         {op, id} instead of nth: its call creating `provision:id` id
  in_use {op: K}         answer the first K calls of each delete `op` with the "still in
                         use" error of its service (EC2 DependencyViolation, ELBv2
                         ResourceInUse, RDS InvalidDBSubnetGroupStateFault /
                         InvalidDBInstanceState, Route53 HostedZoneNotEmpty, IAM
                         DeleteConflict) WITHOUT
                         forwarding them; K may be {"count": K, "code": "..."}
  lose_reply {op: K}     forward the first K calls of `op` to the emulator, then answer
                         the client with a 500 InternalError (the cloud did it, the client
                         does not know): the SDK retries
  lose_reply_rate, lose_reply_seed
                         the same for this share of all mutating calls
  lose_reply_mode        "error" (default: HTTP 500) or "drop" (close the connection)
  honour_client_token    (default true) EC2 calls with a ClientToken (RunInstances,
                         CreateRouteTable, ...): a token seen before for the same operation
                         returns the first successful call's response without reaching the
                         emulator, and IdempotentParameterMismatch when the other parameters
                         differ, as AWS does (moto ignores ClientToken)

  strict_deletes         (default true) a delete AWS would refuse because of what the
                         emulator holds is answered as AWS does, without forwarding
                         (`fault`: blocked, `blockers`: what the proxy found; moto would
                         delete it): DeleteSubnet with instances, interfaces, endpoints,
                         load balancers or databases in it; DeleteSecurityGroup used by an
                         instance, interface, endpoint, load balancer or database, or named
                         by another group's rule; DeleteVpc with anything left in it;
                         DeleteRouteTable still associated; DetachInternetGateway while the
                         VPC has public addresses mapped; DeleteDBSubnetGroup in use (all
                         DependencyViolation, the last InvalidDBSubnetGroupStateFault, with
                         AWS's messages, which for EC2 name no blocker). And a
                         CreateHostedZone whose CallerReference made a zone already is
                         answered HostedZoneAlreadyExists (`fault`:
                         caller_reference_reused), as AWS does (moto makes a twin).
  kill_on_launch K       terminate (in the emulator) the instance of each of the first K
                         successful RunInstances right after launching it: an instance that
                         died at launch; with honour_client_token the same token keeps
                         answering the dead instance, as AWS does for 24 h
  model {...}            a latency model of AWS (moto answers at once and everything is
                         ready at once); null (default) turns it off. Keys, all optional:
                           call_ms        every call takes at least this long (the proxy
                                          pads the emulator's own time up to it)
                           instance_s     DescribeInstances shows an instance `pending`
                                          this long after its RunInstances
                           db_instance_s  DescribeDBInstances shows a DB instance
                                          `creating` (no endpoint) this long after its
                                          CreateDBInstance (whose answer says `creating`)
                           lb_s           DescribeLoadBalancers shows a load balancer
                                          `provisioning` this long after its create
                           dns_change_s   a Route53 change (ChangeResourceRecordSets,
                                          CreateHostedZone) is PENDING this long, in its
                                          own answer and in GetChange (each change gets
                                          an id of its own; moto gives them all one)
                         Readiness is per resource, timed from the create's answer.

Each recorded call also has `t` and `end`: seconds since the proxy started (or was last
reset) when the request arrived and when its answer left.

`op` is the API operation: the Query/EC2 `Action` or the JSON target, and for Route53 the
operation its REST path maps to (CreateHostedZone, DeleteHostedZone,
ChangeResourceRecordSets, ...). `faulted` means the proxy answered without reaching the
emulator (`fault`: throttle, in_use, blocked, caller_reference_reused, token_replay,
token_mismatch); a lost reply did reach it (`fault`: lost_reply, faulted false). `id` is
the `provision:id` tag a create carries, when the request has one; `token` its EC2
ClientToken, `target` the first of `TARGET_PARAMS` it has (what it acts on: GroupId,
InstanceId, ResourceId.1 of CreateTags, ...).
"""

import http.client
import json
import random
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MUTATING_PREFIXES = (
    "Create", "Delete", "Modify", "Run", "Terminate", "Authorize", "Revoke", "Associate",
    "Disassociate", "Attach", "Detach", "Register", "Deregister", "Change", "Import", "Put",
    "Set", "Add", "Remove", "Replace", "Update", "Start", "Stop", "Reboot", "Enable",
    "Disable", "Allocate", "Release", "Restore", "Copy", "Tag", "Untag", "Rotate",
)
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailers", "transfer-encoding", "upgrade", "content-length",
}
CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")
ROUTE53_LIST_TAGS = re.compile(r"^/2013-04-01/tags/[^/]+/?$")
# (method, path pattern, operation) of the Route53 REST calls the tool makes.
ROUTE53_OPS = [
    ("POST", r"/hostedzone/?", "CreateHostedZone"),
    ("GET", r"/hostedzone/?", "ListHostedZones"),
    ("GET", r"/hostedzonesbyname/?", "ListHostedZonesByName"),
    ("GET", r"/hostedzone/[^/]+/?", "GetHostedZone"),
    ("DELETE", r"/hostedzone/[^/]+/?", "DeleteHostedZone"),
    ("POST", r"/hostedzone/[^/]+/rrset/?", "ChangeResourceRecordSets"),
    ("GET", r"/hostedzone/[^/]+/rrset/?", "ListResourceRecordSets"),
    ("POST", r"/hostedzone/[^/]+/associatevpc/?", "AssociateVPCWithHostedZone"),
    ("POST", r"/hostedzone/[^/]+/disassociatevpc/?", "DisassociateVPCFromHostedZone"),
    ("GET", r"/change/[^/]+/?", "GetChange"),
    ("POST", r"/tags/[^/]+/[^/]+/?", "ChangeTagsForResource"),
    ("GET", r"/tags/[^/]+/[^/]+/?", "ListTagsForResource"),
    ("POST", r"/tags/[^/]+/?", "ListTagsForResources"),
]
TAG_KEY = re.compile(r"^(.*\.)Key$")
# The parameter naming what a Query/EC2 call acts on, first found first.
TARGET_PARAMS = (
    "GroupId", "InstanceId", "InstanceId.1", "ResourceId.1", "VolumeId", "SubnetId", "VpcId",
    "RouteTableId", "InternetGatewayId", "VpcEndpointId.1", "LoadBalancerArn",
    "TargetGroupArn", "ListenerArn", "DBInstanceIdentifier", "DBSubnetGroupName",
)

LOCK = threading.Lock()
STATE = {}


SETTINGS = (
    "fault_rate", "seed", "hold_after_mutations", "hold_call", "delay_ms", "in_use",
    "lose_reply", "lose_reply_rate", "lose_reply_seed", "lose_reply_mode",
    "honour_client_token", "strict_deletes", "kill_on_launch", "model", "slow_ops",
)


def default_state():
    return {
        "fault_rate": 0.0,
        "seed": 0,
        "hold_after_mutations": None,
        "hold_call": None,
        "delay_ms": 0,
        "in_use": {},
        "lose_reply": {},
        "lose_reply_rate": 0.0,
        "lose_reply_seed": 0,
        "lose_reply_mode": "error",
        "honour_client_token": True,
        "strict_deletes": True,
        "kill_on_launch": 0,
        "model": None,
        "slow_ops": {},
        # resource (instance id, DB identifier, LB ARN, change id) -> time it is ready
        "ready_at": {},
        "epoch": time.monotonic(),
        "rng": random.Random(0),
        "lose_rng": random.Random(0),
        "mutations": 0,
        "seen": {},
        "calls": [],
        "held": False,
        "held_call": None,
        # set -> the held responses end; deliver[0] says whether they are sent
        "release": threading.Event(),
        "deliver": [False],
        # ClientToken -> (fingerprint, status, headers, body)
        "tokens": {},
    }


def restart_counters():
    STATE["rng"] = random.Random(STATE["seed"])
    STATE["lose_rng"] = random.Random(STATE["lose_reply_seed"])
    STATE["mutations"] = 0
    STATE["seen"] = {}
    STATE["held"] = False
    STATE["held_call"] = None


STATE.update(default_state())


def route53_op(method, bare):
    rest = bare[len("/2013-04-01"):] if bare.startswith("/2013-04-01") else bare
    for want_method, pattern, op in ROUTE53_OPS:
        if method == want_method and re.fullmatch(pattern, rest):
            return op
    return f"{method} {bare}"


def form_of(body, path):
    """The Query/EC2 parameters of a request, as a flat dict (first value of each)."""
    form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query, keep_blank_values=True)
    merged = {k: v[0] for k, v in query.items()}
    merged.update({k: v[0] for k, v in form.items()})
    return merged


def provision_id(form):
    """The value of a `provision:id` tag in a Query/EC2 request, if any."""
    for key, value in form.items():
        match = TAG_KEY.match(key)
        if match and value == "provision:id":
            return form.get(match.group(1) + "Value")
    return None


def classify(method, path, headers, body):
    """(service, action, op, mutating, protocol, form) of one AWS request."""
    auth = headers.get("Authorization", "")
    match = CREDENTIAL_SCOPE.search(auth)
    service = match.group(1) if match else "unknown"
    target = headers.get("X-Amz-Target")
    if target:
        action = target.rsplit(".", 1)[-1]
        return service, action, action, action.startswith(MUTATING_PREFIXES), "json", {}
    if service == "route53" or path.startswith("/2013-04-01/"):
        bare = urllib.parse.urlsplit(path).path
        action = f"{method} {bare}"
        mutating = method in ("POST", "DELETE") and not (
            method == "POST" and ROUTE53_LIST_TAGS.match(bare)
        )
        return "route53", action, route53_op(method, bare), mutating, "route53", {}
    if service == "s3":
        # Named like the API: PutObject, DeleteObject, ... with `(lock)` for the state
        # lock object. Not counted as mutating (tests count the cloud's changes), but
        # lose_reply can take them.
        bare = urllib.parse.urlsplit(path).path
        name = {"PUT": "PutObject", "DELETE": "DeleteObject", "GET": "GetObject",
                "HEAD": "HeadObject", "POST": "PostObject"}.get(method, method)
        if bare.strip("/").count("/") == 0:
            name = f"{method} bucket"
        elif bare.endswith(".lock"):
            name += "(lock)"
        return service, name, name, False, "query", {}
    form = form_of(body, path)
    action = form.get("Action", "unknown")
    protocol = "ec2" if service == "ec2" else "query"
    return service, action, action, action.startswith(MUTATING_PREFIXES), protocol, form


def s3_as_aws(path, data):
    """moto 5.2.5 names the root of GetBucketVersioning `GetBucketVersioningResponse`;
    S3 (and the Rust SDK, which checks it) says `VersioningConfiguration`."""
    query = urllib.parse.urlsplit(path).query
    if "versioning" in urllib.parse.parse_qs(query, keep_blank_values=True):
        data = data.replace(b"GetBucketVersioningResponse", b"VersioningConfiguration")
    return data


def error_response(protocol, status, code, message, sender=True):
    """(status, content type, body) of an error in the protocol's dialect."""
    if protocol == "json":
        body = json.dumps({"__type": code, "message": message})
        return status, "application/x-amz-json-1.1", body
    if protocol == "ec2":
        body = (
            f"<Response><Errors><Error><Code>{code}</Code>"
            f"<Message>{message}</Message></Error></Errors>"
            "<RequestID>proxy</RequestID></Response>"
        )
        return status, "text/xml", body
    kind = "Sender" if sender else "Receiver"
    namespace = (
        ' xmlns="https://route53.amazonaws.com/doc/2013-04-01/"' if protocol == "route53" else ""
    )
    body = (
        f"<ErrorResponse{namespace}><Error><Type>{kind}</Type><Code>{code}</Code>"
        f"<Message>{message}</Message></Error><RequestId>proxy</RequestId></ErrorResponse>"
    )
    return status, "text/xml", body


def fault_response(protocol):
    """A throttling error in the protocol's dialect."""
    if protocol == "json":
        return error_response(protocol, 400, "ThrottlingException", "Rate exceeded")
    if protocol == "ec2":
        return error_response(protocol, 503, "RequestLimitExceeded", "Request limit exceeded.")
    if protocol == "route53":
        return error_response(protocol, 400, "Throttling", "Rate exceeded")
    return error_response(protocol, 503, "Throttling", "Rate exceeded")


# The "still in use" answer of each delete, as AWS gives it.
IN_USE_CODES = {
    "DeleteDBSubnetGroup": "InvalidDBSubnetGroupStateFault",
    "DeleteDBInstance": "InvalidDBInstanceState",
    "DeleteDBCluster": "InvalidDBClusterStateFault",
    "DeleteHostedZone": "HostedZoneNotEmpty",
    "DeleteRole": "DeleteConflict",
    "DeleteInstanceProfile": "DeleteConflict",
}


def in_use_response(service, protocol, op, code=None):
    if code is None:
        if op in IN_USE_CODES:
            code = IN_USE_CODES[op]
        elif service == "ec2":
            code = "DependencyViolation"
        else:
            code = "ResourceInUse"
    message = f"proxy: the resource of {op} is still in use by another resource"
    return error_response(protocol, 400, code, message)


def ec2_upstream(port, params):
    """Call the emulator's EC2 API directly (unsigned: moto does not check signatures)."""
    body = urllib.parse.urlencode({"Version": "2016-11-15", **params})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/", body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/ec2/"
                             "aws4_request, SignedHeaders=host, Signature=0",
        })
        return conn.getresponse().read()
    finally:
        conn.close()


def strip_ns(tag):
    return tag.rsplit("}", 1)[-1]


def groups_naming(port, group_id):
    """Security groups (other than `group_id`) with a rule that names `group_id`."""
    import xml.etree.ElementTree as ET
    root = ET.fromstring(ec2_upstream(port, {"Action": "DescribeSecurityGroups"}))
    naming = []
    for info in root.iter():
        if strip_ns(info.tag) != "securityGroupInfo":
            continue
        for group in info:
            own = next((c.text for c in group if strip_ns(c.tag) == "groupId"), None)
            if own == group_id:
                continue
            for perms in group:
                if strip_ns(perms.tag) not in ("ipPermissions", "ipPermissionsEgress"):
                    continue
                for node in perms.iter():
                    if strip_ns(node.tag) == "groupId" and node.text == group_id:
                        naming.append(own)
    return sorted(set(naming))


# --- Deletes refused from what the emulator holds (`strict_deletes`) ----------------------
#
# moto deletes a subnet with instances in it, a security group instances or load balancers
# use, a DB subnet group a database uses. AWS refuses these, with a message that (for EC2)
# names no blocker. The proxy reads the emulator (boto3, straight to moto) and refuses the
# same way; moto itself already refuses a target group behind a listener, an attached
# internet gateway and a VPC with subnets.

CLIENTS = {}
LIVE_INSTANCE_STATES = ["pending", "running", "shutting-down", "stopping", "stopped"]


def client(port, service):
    key = (port, service)
    with LOCK:
        found = CLIENTS.get(key)
    if found is None:
        import boto3
        from botocore.config import Config
        found = boto3.client(
            service, endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
            aws_access_key_id="test", aws_secret_access_key="test",
            config=Config(retries={"max_attempts": 1}),
        )
        with LOCK:
            CLIENTS[key] = found
    return found


def live_instances(ec2, filters):
    found = []
    for page in ec2.get_paginator("describe_instances").paginate(
        Filters=filters + [{"Name": "instance-state-name", "Values": LIVE_INSTANCE_STATES}]
    ):
        for reservation in page["Reservations"]:
            found += [i["InstanceId"] for i in reservation["Instances"]]
    return found


def interfaces(ec2, filters):
    """ENIs, except those of terminated instances (AWS deletes an instance's own
    interfaces with it; moto keeps them)."""
    found = []
    for eni in ec2.describe_network_interfaces(Filters=filters)["NetworkInterfaces"]:
        instance = (eni.get("Attachment") or {}).get("InstanceId")
        if instance and not live_instances(ec2, [{"Name": "instance-id", "Values": [instance]}]):
            continue
        found.append(eni["NetworkInterfaceId"])
    return found


def live_endpoints(ec2):
    return [
        e for e in ec2.describe_vpc_endpoints()["VpcEndpoints"]
        if e.get("State", "").lower() not in ("deleted", "deleting")
    ]


def load_balancers(port):
    return client(port, "elbv2").describe_load_balancers()["LoadBalancers"]


def db_instances(port):
    return [
        d for d in client(port, "rds").describe_db_instances()["DBInstances"]
        if d.get("DBInstanceStatus") != "deleting"
    ]


def subnet_blockers(port, subnet):
    ec2 = client(port, "ec2")
    found = live_instances(ec2, [{"Name": "subnet-id", "Values": [subnet]}])
    found += interfaces(ec2, [{"Name": "subnet-id", "Values": [subnet]}])
    found += [e["VpcEndpointId"] for e in live_endpoints(ec2) if subnet in e.get("SubnetIds", [])]
    found += [
        lb["LoadBalancerArn"] for lb in load_balancers(port)
        if any(z.get("SubnetId") == subnet for z in lb.get("AvailabilityZones", []))
    ]
    found += [
        d["DBInstanceIdentifier"] for d in db_instances(port)
        if any(s["SubnetIdentifier"] == subnet
               for s in (d.get("DBSubnetGroup") or {}).get("Subnets", []))
    ]
    return found


def group_blockers(port, group):
    ec2 = client(port, "ec2")
    found = live_instances(ec2, [{"Name": "instance.group-id", "Values": [group]}])
    found += interfaces(ec2, [{"Name": "group-id", "Values": [group]}])
    found += [
        e["VpcEndpointId"] for e in live_endpoints(ec2)
        if any(g["GroupId"] == group for g in e.get("Groups", []))
    ]
    found += [lb["LoadBalancerArn"] for lb in load_balancers(port) if group in lb.get("SecurityGroups", [])]
    found += [
        d["DBInstanceIdentifier"] for d in db_instances(port)
        if any(g["VpcSecurityGroupId"] == group for g in d.get("VpcSecurityGroups", []))
    ]
    found += groups_naming(port, group)
    return found


def mapped_public_addresses(port, vpc):
    """What holds a public address in `vpc`: instances with one, internet-facing LBs."""
    ec2 = client(port, "ec2")
    found = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=[
        {"Name": "vpc-id", "Values": [vpc]},
        {"Name": "instance-state-name", "Values": LIVE_INSTANCE_STATES},
    ]):
        for reservation in page["Reservations"]:
            found += [i["InstanceId"] for i in reservation["Instances"] if i.get("PublicIpAddress")]
    found += [
        lb["LoadBalancerArn"] for lb in load_balancers(port)
        if lb.get("VpcId") == vpc and lb.get("Scheme") == "internet-facing"
    ]
    return found


def vpc_blockers(port, vpc):
    ec2 = client(port, "ec2")
    in_vpc = [{"Name": "vpc-id", "Values": [vpc]}]
    found = [s["SubnetId"] for s in ec2.describe_subnets(Filters=in_vpc)["Subnets"]]
    found += [
        g["GroupId"] for g in ec2.describe_security_groups(Filters=in_vpc)["SecurityGroups"]
        if g["GroupName"] != "default"
    ]
    found += [
        g["InternetGatewayId"] for g in ec2.describe_internet_gateways(
            Filters=[{"Name": "attachment.vpc-id", "Values": [vpc]}])["InternetGateways"]
    ]
    found += [
        t["RouteTableId"] for t in ec2.describe_route_tables(Filters=in_vpc)["RouteTables"]
        if not any(a.get("Main") for a in t.get("Associations", []))
    ]
    found += [e["VpcEndpointId"] for e in live_endpoints(ec2) if e.get("VpcId") == vpc]
    return found


def route_table_blockers(port, table):
    ec2 = client(port, "ec2")
    tables = ec2.describe_route_tables(
        Filters=[{"Name": "route-table-id", "Values": [table]}])["RouteTables"]
    return [
        a.get("SubnetId") or a.get("GatewayId") or "main"
        for t in tables for a in t.get("Associations", [])
        if a.get("AssociationState", {}).get("State", "associated") == "associated"
    ]


def db_subnet_group_blockers(port, name):
    return [
        d["DBInstanceIdentifier"] for d in db_instances(port)
        if (d.get("DBSubnetGroup") or {}).get("DBSubnetGroupName") == name
    ]


def blocked_delete(port, op, form, body):
    """AWS's refusal of a delete the emulator would accept: (code, message, blockers), or
    None. The message is AWS's, which names no blocker (but RDS's does)."""
    if op == "DeleteSubnet" and form.get("SubnetId"):
        subnet = form["SubnetId"]
        found = subnet_blockers(port, subnet)
        return found and ("DependencyViolation",
                          f"The subnet '{subnet}' has dependencies and cannot be deleted.", found)
    if op == "DeleteSecurityGroup" and form.get("GroupId"):
        group = form["GroupId"]
        found = group_blockers(port, group)
        return found and ("DependencyViolation", f"resource {group} has a dependent object", found)
    if op == "DeleteVpc" and form.get("VpcId"):
        vpc = form["VpcId"]
        found = vpc_blockers(port, vpc)
        return found and ("DependencyViolation",
                          f"The vpc '{vpc}' has dependencies and cannot be deleted.", found)
    if op == "DeleteRouteTable" and form.get("RouteTableId"):
        table = form["RouteTableId"]
        found = route_table_blockers(port, table)
        return found and ("DependencyViolation",
                          f"The routeTable '{table}' has dependencies and cannot be deleted.",
                          found)
    if op == "DetachInternetGateway" and form.get("VpcId"):
        vpc = form["VpcId"]
        found = mapped_public_addresses(port, vpc)
        return found and (
            "DependencyViolation",
            f"Network {vpc} has some mapped public address(es). Please unmap those public "
            "address(es) before detaching the gateway.", found)
    if op == "DeleteDBSubnetGroup" and form.get("DBSubnetGroupName"):
        name = form["DBSubnetGroupName"]
        found = db_subnet_group_blockers(port, name)
        return found and (
            "InvalidDBSubnetGroupStateFault",
            f"Cannot delete the subnet group '{name}' because at least one database "
            f"instance: {found[0]} is still using it.", found)
    return None


def inventory(port):
    """Everything the emulator holds, tagged or not, one line per resource ("kind id"),
    sorted: what a test diffs before and after a destroy. DB snapshots and secrets
    scheduled for deletion are listed as such (destroy keeps them on purpose)."""
    ec2, elb, rds = client(port, "ec2"), client(port, "elbv2"), client(port, "rds")
    out = []
    out += [f"vpc {v['VpcId']}" for v in ec2.describe_vpcs()["Vpcs"]]
    out += [f"subnet {s['SubnetId']}" for s in ec2.describe_subnets()["Subnets"]]
    out += [f"security group {g['GroupId']}"
            for g in ec2.describe_security_groups()["SecurityGroups"]]
    out += [f"route table {t['RouteTableId']}" for t in ec2.describe_route_tables()["RouteTables"]]
    out += [f"internet gateway {g['InternetGatewayId']}"
            for g in ec2.describe_internet_gateways()["InternetGateways"]]
    out += [f"network interface {n['NetworkInterfaceId']}"
            for n in ec2.describe_network_interfaces()["NetworkInterfaces"]]
    for page in ec2.get_paginator("describe_instances").paginate():
        for reservation in page["Reservations"]:
            out += [f"instance {i['InstanceId']}" for i in reservation["Instances"]
                    if i["State"]["Name"] != "terminated"]
    out += [f"volume {v['VolumeId']}" for v in ec2.describe_volumes()["Volumes"]]
    out += [f"key pair {k['KeyName']}" for k in ec2.describe_key_pairs()["KeyPairs"]]
    out += [f"vpc endpoint {e['VpcEndpointId']}" for e in live_endpoints(ec2)]
    out += [f"address {a.get('AllocationId') or a.get('PublicIp')}"
            for a in ec2.describe_addresses()["Addresses"]]
    out += [f"nat gateway {g['NatGatewayId']}" for g in ec2.describe_nat_gateways()["NatGateways"]
            if g.get("State") not in ("deleted", "deleting")]
    lbs = elb.describe_load_balancers()["LoadBalancers"]
    out += [f"load balancer {lb['LoadBalancerArn']}" for lb in lbs]
    for lb in lbs:
        out += [f"listener {l['ListenerArn']}"
                for l in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]]
    out += [f"target group {t['TargetGroupArn']}"
            for t in elb.describe_target_groups()["TargetGroups"]]
    out += [f"db instance {d['DBInstanceIdentifier']}"
            for d in rds.describe_db_instances()["DBInstances"]]
    out += [f"db subnet group {g['DBSubnetGroupName']}"
            for g in rds.describe_db_subnet_groups()["DBSubnetGroups"]]
    out += [f"db snapshot (kept) {s['DBSnapshotIdentifier']}"
            for s in rds.describe_db_snapshots()["DBSnapshots"]]
    secrets = client(port, "secretsmanager").list_secrets(IncludePlannedDeletion=True)
    out += [("secret (scheduled for deletion) " if s.get("DeletedDate") else "secret ")
            + s["Name"] for s in secrets["SecretList"]]
    iam = client(port, "iam")
    out += [f"iam role {r['RoleName']}" for r in iam.list_roles()["Roles"]]
    out += [f"instance profile {p['InstanceProfileName']}"
            for p in iam.list_instance_profiles()["InstanceProfiles"]]
    out += [f"iam policy {p['PolicyName']}"
            for p in iam.list_policies(Scope="Local")["Policies"]]
    r53 = client(port, "route53")
    for zone in r53.list_hosted_zones()["HostedZones"]:
        out.append(f"hosted zone {zone['Name']} {zone['Id']}")
        for record in r53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]:
            out.append(f"record {record['Name']} {record['Type']} in {zone['Id']}")
    out += [f"bucket {b['Name']}" for b in client(port, "s3").list_buckets()["Buckets"]]
    return sorted(out)


def caller_reference_used(port, body):
    """The zone a CreateHostedZone's CallerReference already made, if any (moto makes a
    twin; AWS answers HostedZoneAlreadyExists)."""
    match = re.search(rb"<CallerReference>([^<]*)</CallerReference>", body)
    if not match:
        return None
    reference = match.group(1).decode()
    for page in client(port, "route53").get_paginator("list_hosted_zones").paginate():
        for zone in page["HostedZones"]:
            if zone["CallerReference"] == reference:
                return zone["Id"]
    return None


def launched_ids(data):
    import xml.etree.ElementTree as ET
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return []
    return [n.text for n in root.iter() if strip_ns(n.tag) == "instanceId"]


def lost_reply_response(protocol):
    """What the client sees of a call the cloud did but whose answer got lost."""
    if protocol == "json":
        return error_response(protocol, 500, "InternalFailure", "proxy: reply lost")
    return error_response(protocol, 500, "InternalError", "proxy: reply lost", sender=False)


def take(counts, op):
    """Spend one of the first-K budget of `op` in `counts`; the error code override."""
    entry = counts.get(op)
    if entry is None:
        return False, None
    if isinstance(entry, dict):
        left, code = entry.get("count", 0), entry.get("code")
        if left <= 0:
            return False, None
        entry["count"] = left - 1
        return True, code
    if entry <= 0:
        return False, None
    counts[op] = entry - 1
    return True, None


# --- The latency model (`model` setting) --------------------------------------------------

INSTANCE_STATE = re.compile(
    r"(<instanceId>(i-[0-9a-zA-Z]+)</instanceId>(?:(?!<instanceId>).)*?<instanceState>)"
    r"<code>\d+</code><name>([a-z-]+)</name>",
    re.S,
)
DB_BLOCK = re.compile(r"<DBInstance>.*?</DBInstance>", re.S)
DB_ID = re.compile(r"<DBInstanceIdentifier>([^<]+)</DBInstanceIdentifier>")
LB_STATE = re.compile(
    r"(<LoadBalancerArn>([^<]+)</LoadBalancerArn>(?:(?!<LoadBalancerArn>).)*?<State>\s*<Code>)"
    r"([a-z_-]+)(</Code>)",
    re.S,
)
CHANGE_INFO = re.compile(r"(<ChangeInfo>\s*<Id>([^<]+)</Id>\s*<Status>)([A-Z]+)(</Status>)", re.S)


def change_key(change_id):
    return "change:" + change_id.rsplit("/", 1)[-1]


def apply_model(model, op, path, data, now):
    """Rewrite an emulator's (successful) answer the way AWS would answer at `now`: what
    was created less than the model's time ago is not ready yet. Records creations."""
    if not model:
        return data
    text = data.decode("utf-8", "replace")
    ready_at = STATE["ready_at"]

    def pending(key):
        with LOCK:
            return ready_at.get(key, 0) > now

    def created(key, seconds):
        if seconds:
            with LOCK:
                ready_at.setdefault(key, now + seconds)

    if op == "RunInstances":
        for m in INSTANCE_STATE.finditer(text):
            created("i:" + m.group(2), model.get("instance_s", 0))
    if op in ("RunInstances", "DescribeInstances") and model.get("instance_s"):
        def instance(m):
            if m.group(3) == "running" and pending("i:" + m.group(2)):
                return m.group(1) + "<code>0</code><name>pending</name>"
            return m.group(0)
        text = INSTANCE_STATE.sub(instance, text)
    if op in ("CreateDBInstance", "DescribeDBInstances") and model.get("db_instance_s"):
        def db(m):
            block = m.group(0)
            ident = DB_ID.search(block)
            if not ident:
                return block
            key = "db:" + ident.group(1)
            if op == "CreateDBInstance":
                created(key, model["db_instance_s"])
            if not pending(key):
                return block
            block = re.sub(
                r"<DBInstanceStatus>[^<]*</DBInstanceStatus>",
                "<DBInstanceStatus>creating</DBInstanceStatus>", block,
            )
            return re.sub(r"<Endpoint>.*?</Endpoint>", "", block, flags=re.S)
        text = DB_BLOCK.sub(db, text)
    if op in ("CreateLoadBalancer", "DescribeLoadBalancers") and model.get("lb_s"):
        def lb(m):
            key = "lb:" + m.group(2)
            if op == "CreateLoadBalancer":
                created(key, model["lb_s"])
            if pending(key):
                return m.group(1) + "provisioning" + m.group(4)
            return m.group(0)
        text = LB_STATE.sub(lb, text)
    if op in ("ChangeResourceRecordSets", "CreateHostedZone", "GetChange") and model.get("dns_change_s"):
        def change(m):
            head, change_id = m.group(1), m.group(2)
            if op != "GetChange":
                # moto answers every change with the same id: give each its own.
                with LOCK:
                    STATE["changes"] = STATE.get("changes", 0) + 1
                    fresh = f"/change/CPROXY{STATE['changes']:08d}"
                head = head.replace(change_id, fresh)
                change_id = fresh
                created(change_key(change_id), model["dns_change_s"])
            if pending(change_key(change_id)):
                return head + "PENDING" + m.group(4)
            return head + m.group(3) + m.group(4)
        text = CHANGE_INFO.sub(change, text)
    return text.encode("utf-8")


def token_fingerprint(form):
    return sorted((k, v) for k, v in form.items() if k != "ClientToken")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are two writes: without TCP_NODELAY the body waits for the
    # client's delayed ACK (~40 ms a call).
    disable_nagle_algorithm = True
    upstream_port = 0

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status, content_type, body, extra_headers=()):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        for name, value in extra_headers:
            self.send_header(name, value)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        try:
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client is gone (killed)
            self.close_connection = True

    def control(self, body):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/__proxy/stats":
            with LOCK:
                doc = {
                    "calls": list(STATE["calls"]),
                    "held": STATE["held"],
                    "held_call": STATE["held_call"],
                    "epoch": STATE["epoch"],
                }
            return self.reply(200, "application/json", json.dumps(doc))
        if path == "/__proxy/inventory":
            doc = inventory(self.upstream_port)
            return self.reply(200, "application/json", json.dumps(doc))
        if path == "/__proxy/reset":
            with LOCK:
                STATE["deliver"][0] = False
                STATE["release"].set()
                STATE.update(default_state())
            return self.reply(200, "application/json", "{}")
        if path == "/__proxy/release":
            with LOCK:
                STATE["deliver"][0] = True
                STATE["release"].set()
                STATE["release"] = threading.Event()
                STATE["deliver"] = [False]
                STATE["held"] = False
            return self.reply(200, "application/json", "{}")
        if path == "/__proxy/config":
            wanted = json.loads(body or b"{}")
            unknown = sorted(set(wanted) - set(SETTINGS))
            if unknown:
                return self.reply(400, "text/plain", f"unknown settings {unknown}")
            with LOCK:
                for key in SETTINGS:
                    if key in wanted:
                        STATE[key] = wanted[key]
                restart_counters()
            return self.reply(200, "application/json", "{}")
        return self.reply(404, "text/plain", "unknown control path")

    def handle_any(self):
        body = self.read_body()
        if self.path.startswith("/__proxy/"):
            return self.control(body)
        service, action, op, mutating, protocol, form = classify(
            self.command, self.path, self.headers, body
        )
        token = (op, form["ClientToken"]) if protocol == "ec2" and form.get("ClientToken") else None
        arrived = time.monotonic()
        with LOCK:
            delay = STATE["delay_ms"]
            model = STATE["model"]
            fault = None
            answer = None
            if STATE["fault_rate"] > 0 and STATE["rng"].random() < STATE["fault_rate"]:
                fault = "throttle"
                answer = fault_response(protocol)
            if fault is None and mutating:
                taken, code = take(STATE["in_use"], op)
                if taken:
                    fault = "in_use"
                    answer = in_use_response(service, protocol, op, code)
            strict_check = fault is None and mutating and STATE["strict_deletes"]
            if fault is None and token and STATE["honour_client_token"]:
                cached = STATE["tokens"].get(token)
                if cached is not None:
                    if cached[0] == token_fingerprint(form):
                        fault = "token_replay"
                        answer = cached[1:]
                    else:
                        fault = "token_mismatch"
                        answer = error_response(
                            protocol, 400, "IdempotentParameterMismatch",
                            f"proxy: client token {token[1]} was used with other parameters",
                        )
            lose = False
            if fault is None and (mutating or service == "s3"):
                lose, _ = take(STATE["lose_reply"], op)
                if not lose and STATE["lose_reply_rate"] > 0:
                    lose = STATE["lose_rng"].random() < STATE["lose_reply_rate"]
            hold = False
            if fault is None:
                if mutating:
                    STATE["mutations"] += 1
                    hold = STATE["hold_after_mutations"] == STATE["mutations"]
                seen = STATE["seen"][op] = STATE["seen"].get(op, 0) + 1
                want = STATE["hold_call"]
                if want and want.get("op") == op:
                    if "id" in want:
                        hold = hold or provision_id(form) == want["id"]
                    elif want.get("nth", 1) == seen:
                        hold = True
            release, deliver = STATE["release"], STATE["deliver"]
            call = {
                "service": service,
                "action": action,
                "op": op,
                "mutating": mutating,
                "faulted": fault is not None,
                "fault": "lost_reply" if lose else fault,
                "id": provision_id(form),
                "token": form.get("ClientToken"),
                "target": next((form[k] for k in TARGET_PARAMS if form.get(k)), None),
                "t": round(arrived - STATE["epoch"], 4),
            }
            STATE["calls"].append(call)
        if delay:
            time.sleep(delay / 1000.0)
        slow = STATE["slow_ops"].get(op)
        if slow:
            time.sleep(slow / 1000.0)
        if strict_check and answer is None:
            blocked = blocked_delete(self.upstream_port, op, form, body)
            if blocked:
                code, message, blockers = blocked
                with LOCK:
                    call["faulted"] = True
                    call["fault"] = "blocked"
                    call["blockers"] = blockers
                answer = error_response(protocol, 400, code, message)
            if op == "CreateHostedZone":
                zone = caller_reference_used(self.upstream_port, body)
                if zone:
                    with LOCK:
                        call["faulted"] = True
                        call["fault"] = "caller_reference_reused"
                    answer = error_response(
                        protocol, 409, "HostedZoneAlreadyExists",
                        "A hosted zone has already been created with the specified caller "
                        "reference.",
                    )
        if answer is not None:
            status, content_type, data = answer[0], answer[1], answer[2]
            extra = answer[3] if len(answer) > 3 else ()
            return self.reply(status, content_type, data, extra)

        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=120)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            status = response.status
            out_headers = [
                (k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP
            ]
        except Exception as error:  # the emulator went away: tell the client
            return self.reply(502, "text/plain", f"proxy: upstream failed: {error}")
        finally:
            conn.close()
        if model and 200 <= status < 300:
            data = apply_model(model, op, self.path, data, time.monotonic())

        if service == "s3" and self.command == "GET" and 200 <= status < 300:
            data = s3_as_aws(self.path, data)
        if op == "RunInstances" and 200 <= status < 300:
            with LOCK:
                kill = STATE["kill_on_launch"] > 0
                if kill:
                    STATE["kill_on_launch"] -= 1
                    call["fault"] = "killed_on_launch"
            if kill:
                ids = launched_ids(data)
                params = {"Action": "TerminateInstances"}
                params.update({f"InstanceId.{n + 1}": i for n, i in enumerate(ids)})
                ec2_upstream(self.upstream_port, params)
        if token and STATE["honour_client_token"] and 200 <= status < 300:
            with LOCK:
                STATE["tokens"].setdefault(
                    token, (token_fingerprint(form), status, None, data, out_headers)
                )
        if hold:
            with LOCK:
                STATE["held"] = True
                STATE["held_call"] = call
            release.wait()
            if not deliver[0]:
                self.close_connection = True
                return None
        if lose:
            if STATE["lose_reply_mode"] == "drop":
                self.close_connection = True
                return None
            status, content_type, text = lost_reply_response(protocol)
            return self.reply(status, content_type, text)
        if model and model.get("call_ms"):
            left = arrived + model["call_ms"] / 1000.0 - time.monotonic()
            if left > 0:
                time.sleep(left)
        call["end"] = round(time.monotonic() - STATE["epoch"], 4)
        return self.reply(status, None, data, out_headers)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # The client opens a connection per concurrent call (a plan reads every kind at
    # once): with the default backlog of 5 the kernel drops the surplus SYNs, and the
    # client's retry comes a whole second later.
    request_queue_size = 256

    def handle_error(self, request, client_address):
        # A client killed mid-request (the crash tests do that on purpose) is not news.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


def main():
    Handler.upstream_port = int(sys.argv[1])
    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
