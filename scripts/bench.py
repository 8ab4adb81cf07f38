"""End-to-end benchmark of `provision` under a latency model of AWS; see scripts/bench.sh.

The real binary talks to moto through tests/support/proxy.py, which applies the model:
every call takes CALL_MS, an instance is `pending` for INSTANCE_S after RunInstances, an
RDS instance `creating` for DB_S after CreateDBInstance, a load balancer `provisioning` for
LB_S, a Route53 change PENDING for DNS_S. For each topology it times `apply --yes` as a
user does (process start to exit, its plan included) and compares that with the critical
path of a dependency model of AWS written here (`aws_model`: what AWS requires before
what, with the fewest round trips; independent of the tool's step graph and call
pattern), over the resources of the environment's `plan --json`. It also reports the
reads the apply makes before its first change (when the preflight reads went out, and that
they went at once), the tool's own step graph as a secondary figure, then the
no-op plan (calls, time), start-up time (process start to its first request at the
proxy), peak RSS, binary size, and for k3s the 3/5/9-node table. It asserts the issue's
targets and exits 1 when one is missed (after printing everything).
"""
import argparse, base64, json, os, shlex, shutil, socket, statistics, subprocess, sys, tempfile, time
import urllib.request

import boto3

CALL_MS = 20
INSTANCE_S, DB_S, LB_S, DNS_S = 2.0, 10.0, 4.0, 2.0
MODEL = {"call_ms": CALL_MS, "instance_s": INSTANCE_S, "db_instance_s": DB_S, "lb_s": LB_S,
         "dns_change_s": DNS_S}

# --- The yardstick: a dependency model of AWS, written here ------------------------------
#
# What AWS itself requires before what, for the resources a fresh apply creates. The
# resources (which exist, how many nodes, which subnet a node is in, which groups a rule
# names, what a record points at) come from `provision plan --json`: they are facts about
# the AWS resources. The EDGES and the ROUND TRIPS below come from this model only, never
# from the tool's step graph (`after` of its events), its `after` fields or its call
# pattern. Every node is one round trip (CALL_MS; calls that can go at once count once) or
# a wait of the latency model followed by the one read that sees the resource ready.
# Reads AWS does not need (the plan's survey of what exists, preflight checks, ownership
# reads, polls that come back "not yet", state saves) and the process start count against
# the tool. Edges, by kind (`->` reads "needs"):
#
#   (zones)            DescribeAvailabilityZones: which zone `zone_index` is; needs nothing
#   (zone lookup)      ListHostedZonesByName, per existing zone a record names
#   vpc                CreateVpc; needs nothing
#     vpc:dns          ModifyVpcAttribute (support, hostnames: one per call, both at once)
#                      -> vpc. Only a private hosted zone and an endpoint with private DNS
#                      need it (AWS refuses those without DNS hostnames)
#   internet_gateway   CreateInternetGateway; needs nothing (no VPC in the call)
#     igw:attach       AttachInternetGateway -> igw, vpc
#   subnet             CreateSubnet -> vpc, (zones); map_public_ip: ModifySubnetAttribute
#                      -> subnet, needed by nothing (RunInstances asks for its own address)
#   route_table        CreateRouteTable -> vpc
#     rt:route         CreateRoute 0.0.0.0/0 -> route table, igw:attach (a detached gateway
#                      is refused)
#     rt:assoc         AssociateRouteTable for every subnet, at once -> route table, subnets
#   security_group     CreateSecurityGroup -> vpc
#     sg:rules         its ingress and egress (and the default egress revoked), at once ->
#                      the group and every other group a rule names (AWS refuses a rule
#                      naming a group that does not exist). Nothing needs the rules to exist
#                      to be created: an instance, NLB or database takes the group's id
#   key_pair           ImportKeyPair; needs nothing
#   secret             CreateSecret with its value; needs nothing
#   volume             CreateVolume -> (zones) (it takes a zone, not a subnet)
#   instance           RunInstances -> subnet, its groups, key pair, instance profile (its
#                      role added); the private address comes in the answer
#     i:running        pending INSTANCE_S, then DescribeInstances -> RunInstances
#     i:volumes        AttachVolume, all at once -> running (AWS: IncorrectState while
#                      pending), the volumes
#     workload edge    an instance with a public address (the registry host: its first boot
#                      downloads its packages) boots after the internet route of its subnet
#                      (rt:route, rt:assoc): not an API rule, a rule of what it runs
#   db_subnet_group    CreateDBSubnetGroup -> its subnets
#   database           CreateDBInstance -> subnet group, security group, the secret holding
#                      its password (written by CreateSecret: no read needed)
#     db:available     creating DB_S, then DescribeDBInstances
#   load_balancer      CreateLoadBalancer -> subnets, security group; internet-facing also
#                      -> igw:attach (AWS: InvalidSubnet without a gateway)
#     lb:attrs         ModifyLoadBalancerAttributes -> LB; needed by nothing
#     lb:active        provisioning LB_S, then DescribeLoadBalancers
#   target_group       CreateTargetGroup -> vpc; tg:attrs ModifyTargetGroupAttributes -> TG
#     tg:targets       RegisterTargets, all at once -> TG, every target instance RUNNING
#                      (ELBv2 API reference, RegisterTargets: "If the target is an EC2
#                      instance, it must be in the running state when you register it")
#   listener           CreateListener -> LB (created, not active), target group
#   hosted_zone        CreateHostedZone with its VPC -> vpc, vpc:dns;
#     hz:insync        PENDING DNS_S, then GetChange
#   dns_record         ChangeResourceRecordSets -> the zone (looked up or created); an alias
#                      or CNAME to a load balancer -> lb:active (Route53 answers
#                      InvalidChangeBatch "target was not found" for a load balancer still
#                      provisioning: boto/boto#2519; reported, not documented: the reading
#                      that favours the tool); an A record to an instance's private
#                      address -> RunInstances (the address is in its answer)
#     rec:insync       PENDING DNS_S, then GetChange
#   vpc_endpoint       CreateVpcEndpoint -> vpc, subnets, groups (+ vpc:dns with private DNS)
#   iam_role           CreateRole; role:policies AttachRolePolicy, all at once -> role
#   instance_profile   CreateInstanceProfile; profile:role AddRoleToInstanceProfile ->
#                      profile, role
#
# Tags ride in the creates (TagSpecifications, Tags): no round trip of their own. The apply
# is done when every node is: the critical path is the longest path through this DAG.


class ModelError(Exception):
    pass


def aws_model(actions, model):
    """The nodes {name: {w, after, what}} of the model for the resources `actions` create."""
    call = model["call_ms"] / 1000.0
    res = {a["id"]: a for a in actions}
    for a in actions:
        if a["action"] != "create":
            raise ModelError(f"{a['id']}: the model covers a fresh apply, not {a['action']}")
    nodes = {}
    refs = []  # the nodes other nodes need: checked to exist once every node is made

    def node(name, what, after=(), calls=1, wait=0.0):
        nodes[name] = {"w": calls * call + wait, "after": list(after), "what": what}
        return name

    def made(rid, part=None):
        """The node that makes resource `rid` usable (None when it exists already)."""
        if rid not in res:
            return None
        name = rid if part is None else f"{rid}:{part}"
        refs.append(name)
        return name

    def deps(*names):
        return [n for n in names if n]

    def zones():
        if "(zones)" not in nodes:
            node("(zones)", "DescribeAvailabilityZones")
        return "(zones)"

    for rid, a in res.items():
        kind, c = a["kind"], a["config"]
        if kind == "vpc":
            node(rid, "CreateVpc")
            node(f"{rid}:dns", "ModifyVpcAttribute x2 at once", [rid])
        elif kind == "internet_gateway":
            node(rid, "CreateInternetGateway")
            node(f"{rid}:attach", "AttachInternetGateway", deps(rid, made(c["vpc"])))
        elif kind == "subnet":
            node(rid, "CreateSubnet", deps(made(c["vpc"]), zones()))
            if c.get("map_public_ip"):
                node(f"{rid}:attr", "ModifySubnetAttribute", [rid])
        elif kind == "route_table":
            node(rid, "CreateRouteTable", deps(made(c["vpc"])))
            if c.get("internet_gateway"):
                node(f"{rid}:route", "CreateRoute 0.0.0.0/0",
                     deps(rid, made(c["internet_gateway"], "attach")))
            if c.get("subnets"):
                node(f"{rid}:assoc", "AssociateRouteTable, all at once",
                     deps(rid, *(made(s) for s in c["subnets"])))
        elif kind == "security_group":
            node(rid, "CreateSecurityGroup", deps(made(c["vpc"])))
            named = sorted({r["peer"]["group"] for r in c["ingress"] + c["egress"]
                            if isinstance(r["peer"], dict) and "group" in r["peer"]})
            node(f"{rid}:rules", "its rules, all at once",
                 deps(rid, *(made(g) for g in named if g != rid)))
        elif kind == "key_pair":
            node(rid, "ImportKeyPair")
        elif kind == "secret":
            node(rid, "CreateSecret")
        elif kind == "volume":
            node(rid, "CreateVolume", [zones()])
        elif kind == "instance":
            after = deps(made(c["subnet"]), *(made(g) for g in c["security_groups"]),
                         made(c["key_pair"]) if c.get("key_pair") else None,
                         made(c["instance_profile"], "role") if c.get("instance_profile") else None)
            if c.get("public_ip"):
                # Workload edge: its first boot needs the internet route of its subnet.
                for tid, t in res.items():
                    if (t["kind"] == "route_table" and c["subnet"] in t["config"].get("subnets", [])
                            and t["config"].get("internet_gateway")):
                        after += [made(tid, "route"), made(tid, "assoc")]
            node(rid, "RunInstances", after)
            node(f"{rid}:running", f"pending {model['instance_s']:g} s, DescribeInstances", [rid],
                 wait=model["instance_s"])
            if c.get("volumes"):
                node(f"{rid}:volumes", "AttachVolume, all at once",
                     deps(f"{rid}:running", *(made(v) for v in c["volumes"])))
        elif kind == "db_subnet_group":
            node(rid, "CreateDBSubnetGroup", deps(*(made(s) for s in c["subnets"])))
        elif kind == "database":
            node(rid, "CreateDBInstance", deps(made(c["subnet_group"]), made(c["security_group"]),
                                               made(c["password"]) if c.get("password") else None))
            node(f"{rid}:available", f"creating {model['db_instance_s']:g} s, DescribeDBInstances",
                 [rid], wait=model["db_instance_s"])
        elif kind == "load_balancer":
            after = deps(*(made(s) for s in c["subnets"]), made(c["security_group"]))
            if c["scheme"] == "internet-facing":
                vpcs = {res[s]["config"]["vpc"] for s in c["subnets"] if s in res}
                after += [made(g, "attach") for g, t in res.items()
                          if t["kind"] == "internet_gateway" and t["config"]["vpc"] in vpcs]
            node(rid, "CreateLoadBalancer", after)
            node(f"{rid}:attrs", "ModifyLoadBalancerAttributes", [rid])
            node(f"{rid}:active", f"provisioning {model['lb_s']:g} s, DescribeLoadBalancers", [rid],
                 wait=model["lb_s"])
        elif kind == "target_group":
            node(rid, "CreateTargetGroup", deps(made(c["vpc"])))
            node(f"{rid}:attrs", "ModifyTargetGroupAttributes", [rid])
            if c.get("targets"):
                node(f"{rid}:targets", "RegisterTargets, all at once",
                     deps(rid, *(made(t, "running") for t in c["targets"])))
        elif kind == "listener":
            node(rid, "CreateListener", deps(made(c["load_balancer"]), made(c["target_group"])))
        elif kind == "hosted_zone":
            node(rid, "CreateHostedZone", deps(made(c["vpc"]), made(c["vpc"], "dns")))
            node(f"{rid}:insync", f"PENDING {model['dns_change_s']:g} s, GetChange", [rid],
                 wait=model["dns_change_s"])
        elif kind == "dns_record":
            zone = c["zone"]
            if "existing" in zone:
                z = f"(zone {zone['existing']})"
                if z not in nodes:
                    node(z, "ListHostedZonesByName")
            else:
                z = made(zone["managed"])
            (how, target), = c["target"].items()
            if how in ("alias_load_balancer", "cname_load_balancer"):
                t = made(target, "active")
            elif how == "instance_private_ip":
                t = made(target)
            else:
                raise ModelError(f"{rid}: the model has no rule for a record target {how}")
            node(rid, "ChangeResourceRecordSets", deps(z, t))
            node(f"{rid}:insync", f"PENDING {model['dns_change_s']:g} s, GetChange", [rid],
                 wait=model["dns_change_s"])
        elif kind == "vpc_endpoint":
            node(rid, "CreateVpcEndpoint",
                 deps(made(c["vpc"]), made(c["vpc"], "dns") if c.get("private_dns") else None,
                      *(made(s) for s in c["subnets"]), *(made(g) for g in c["security_groups"])))
        elif kind == "iam_role":
            node(rid, "CreateRole")
            if c.get("policies"):
                node(f"{rid}:policies", "AttachRolePolicy, all at once", [rid])
        elif kind == "instance_profile":
            node(rid, "CreateInstanceProfile")
            node(f"{rid}:role", "AddRoleToInstanceProfile", deps(rid, made(c["role"])))
        else:
            raise ModelError(f"{rid}: the model has no rule for kind {kind}")
    missing = sorted(n for n in refs if n not in nodes)
    if missing:
        raise ModelError(f"the model names parts no rule made: {', '.join(missing)}")
    return nodes


def longest_path(nodes):
    """The critical path (seconds) and its node names, first to last."""
    memo = {}

    def finish(n):
        if n not in memo:
            memo[n] = nodes[n]["w"] + max((finish(a) for a in nodes[n]["after"]), default=0.0)
        return memo[n]
    end = max(nodes, key=finish)
    path, n = [], end
    while n:
        path.append(n)
        n = max(nodes[n]["after"], key=finish) if nodes[n]["after"] else None
    return finish(end), path[::-1]


# The tool's own step graph, weighted as before this model (the `after` of its
# `step_started` events; per step the round trips it needs and the model's wait): only a
# secondary column now. Its edges are the tool's choices, so an unneeded one lengthens it.
TOOL_STEP_CALLS = {
    ("vpc", "create"): 2, ("internet_gateway", "create"): 2, ("subnet", "create"): 1,
    ("route_table", "create"): 2, ("security_group", "create"): 2,
    ("security_group", "update"): 1, ("database", "create"): 2, ("target_group", "create"): 2,
    ("dns_record", "create"): 2,
}
TOOL_STEP_WAIT = {"instance": INSTANCE_S, "database": DB_S, "load_balancer": LB_S,
                  "dns_record": DNS_S, "hosted_zone": DNS_S}

# Reads the API only has per resource (no batch form): not held to one per kind. Their
# number depends on the topology (one VPC, one per target group), never on the nodes.
PER_RESOURCE_READS = {
    "ec2:DescribeVpcAttribute",                        # one attribute per call, 2 per VPC
    "elasticloadbalancing:DescribeLoadBalancerAttributes",
    "elasticloadbalancing:DescribeTargetGroupAttributes",
    "elasticloadbalancing:DescribeTargetHealth",
    "elasticloadbalancing:DescribeTags",               # LB and TG tags; then the listeners'
}

TARGET_RATIO = 1.05
TARGET_NOOP_S = 0.5
TARGET_STARTUP_S = 0.100
TARGET_SCALE = 1.2
TARGET_CALL_P90_MS = 2 * CALL_MS

p = argparse.ArgumentParser()
p.add_argument("--moto", required=True)
p.add_argument("--bin", required=True)
p.add_argument("--runs", type=int, default=3)
p.add_argument("--topologies", default="k3s,rke2,rke")
p.add_argument("--scale", default="3,5,9",
               help="k3s node counts ('' to skip); the product allows 1-9 servers, 50 nodes are "
                    "measured by `cargo bench --bench engine -- scale`")
p.add_argument("--json", help="also write the raw results here")
p.add_argument("--poll-seconds", type=float, default=0.1,
               help="timeouts.poll_seconds of the benchmark's environments (default 0.1: the "
                    "product's 5 s scaled to the model)")
p.add_argument("--apply-args", default="",
               help="extra arguments of the timed `apply` (e.g. '--parallelism 1', to see the "
                    "bench report a miss)")
args = p.parse_args()
APPLY_ARGS = shlex.split(args.apply_args)
binary = os.path.abspath(args.bin)
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port


def wait_http(url):
    for _ in range(300):
        try:
            urllib.request.urlopen(url); return
        except Exception:
            time.sleep(0.1)
    sys.exit(f"{url} did not come up")


class Proxy:
    def __init__(self, upstream):
        self.proc = subprocess.Popen([sys.executable, os.path.join(root, "tests/support/proxy.py"),
                                      str(upstream)], stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"

    def control(self, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method="GET" if data is None else "POST")
        return json.loads(urllib.request.urlopen(req).read() or b"{}")

    def reset(self, model):
        self.control("/__proxy/reset", {})
        if model:
            self.control("/__proxy/config", {"model": model})

    def calls(self):
        """The calls since the last reset, `t` on this machine's monotonic clock."""
        stats = self.control("/__proxy/stats")
        e = stats["epoch"]
        return [dict(c, t=c["t"] + e, end=None if c.get("end") is None else c["end"] + e)
                for c in stats["calls"]]


def run(cmd, cwd, env, events=False):
    """Run provision; wall time, peak RSS (KiB), stdout lines with their arrival times,
    stderr, and when it started (monotonic)."""
    start = time.monotonic()
    proc = subprocess.Popen([binary, *cmd], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1)
    err = []
    import threading
    t = threading.Thread(target=lambda: err.append(proc.stderr.read()))
    t.start()
    lines = []
    for line in proc.stdout:
        lines.append((time.monotonic() - start, line))
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"provision {' '.join(cmd)} failed ({proc.returncode}):\n{''.join(err)}")
    return {"wall": wall, "rss_kib": usage.ru_maxrss, "lines": lines, "stderr": "".join(err),
            "start": start}


def write_env(work, name, topology, nodes):
    key = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + os.urandom(32)).decode()
    open(os.path.join(work, "id.pub"), "w").write(f"ssh-ed25519 {key} bench\n")
    count = f"count = {nodes}\n" if nodes else ""
    # poll_seconds: the model runs ~30-60x faster than AWS (RDS 10 s instead of 5-15 min),
    # so the poll cap shrinks with it: 5 s on AWS, 0.1 s here (--poll-seconds). Every other
    # setting is the default (--parallelism 10, the wait limits).
    open(os.path.join(work, "provision.toml"), "w").write(f'''name = "{name}"
region = "us-east-1"
topology = "{topology}"
hostname = "rancher.lab.example.com"
[network]
admin_cidrs = ["203.0.113.0/24"]
[nodes]
ami = "ami-785db401"
{count}ssh_public_key = "id.pub"
[dns]
zone = "lab.example.com"
[timeouts]
poll_seconds = {args.poll_seconds:g}
''')


def weight(step):
    kind, verb, rid = step["kind"], step["step"], step["id"]
    calls = TOOL_STEP_CALLS.get((kind, verb), 1)
    if rid.startswith("subnet-edge") or rid == "registry":
        calls += 1
    return calls * CALL_MS / 1000.0 + (TOOL_STEP_WAIT.get(kind, 0.0) if verb == "create" else 0.0)


# The reads the plan makes to check what a create would trip over (issue 22: "images,
# instance types, zone offerings, zones, IAM, engine versions"), with the zone lookup and
# the IAM lists. Sent at once, they leave within less than one call (CALL_MS) of each
# other; one sent after another's answer is at least CALL_MS (the model's padding) later.
PREFLIGHT_OPS = {"DescribeImages", "DescribeInstanceTypes", "DescribeInstanceTypeOfferings",
                 "DescribeAvailabilityZones", "DescribeDBEngineVersions", "ListHostedZonesByName",
                 "GetHostedZone", "ListRoles", "ListInstanceProfiles",
                 "GetRole", "GetInstanceProfile"}


def analyse_apply(res, calls, actions):
    """The model's critical path, the tool's own graph (secondary), scheduling delays,
    calls, the reads before the first change, polls, RDS start."""
    steps, finish = {}, {}
    for at, line in res["lines"]:
        ev = json.loads(line)
        key = (ev.get("id"), ev.get("step"))
        if ev["type"] == "step_started":
            steps[key] = {"id": ev["id"], "step": ev["step"], "kind": ev["kind"], "start": at,
                          "after": [(a["id"], a["step"]) for a in ev.get("after", [])]}
        elif ev["type"] == "step_finished":
            finish[key] = at
    for key, s in steps.items():
        s["end"] = finish[key]
    # The yardstick: the longest path of the AWS model over the resources of the plan.
    nodes = aws_model(actions, MODEL)
    critical, path = longest_path(nodes)
    path = [f"{n} ({nodes[n]['what']})" for n in path]
    # Secondary: the longest path over the tool's own step graph (n/a for a binary that
    # does not say what its steps wait for).
    has_graph = any(s["after"] for s in steps.values())
    memo = {}

    def longest(key):
        if key not in memo:
            s = steps[key]
            memo[key] = weight(s) + max((longest(a) for a in s["after"] if a in steps), default=0.0)
        return memo[key]
    tool_critical = max(longest(k) for k in steps) if has_graph else float("nan")
    # How long each step sat ready (its dependencies done) before it started.
    first_start = min(s["start"] for s in steps.values())
    delays = []
    for key, s in steps.items():
        ready = max((steps[a]["end"] for a in s["after"] if a in steps), default=first_start)
        delays.append((s["start"] - ready, f"{s['step']} {s['id']}"))
    delays.sort(reverse=True)
    # Calls, relative to the process start.
    calls = [dict(c, t=c["t"] - res["start"],
                  end=None if c.get("end") is None else c["end"] - res["start"]) for c in calls]
    by_op = {}
    for c in calls:
        by_op[c["op"]] = by_op.get(c["op"], 0) + 1
    first_call = calls[0]["t"] if calls else None
    first_change = min((c["t"] for c in calls if c["mutating"]), default=float("inf"))
    early = [c for c in calls if c["t"] < first_change]
    pre = [c for c in early if c["op"] in PREFLIGHT_OPS]
    preflight = {
        "calls": len(pre),
        "ops": sorted({c["op"] for c in pre}),
        "first_sent": min((c["t"] for c in pre), default=None),
        "last_sent": max((c["t"] for c in pre), default=None),
        "last_answered": max((c["end"] for c in pre if c["end"] is not None), default=None),
        "reads_before_change": len(early),
    }
    rds = [c["t"] for c in calls if c["op"] == "CreateDBInstance"]
    rds_earliest = None
    if "datastore" in nodes:
        memo_f = {}

        def fin(n):
            if n not in memo_f:
                memo_f[n] = nodes[n]["w"] + max((fin(a) for a in nodes[n]["after"]), default=0.0)
            return memo_f[n]
        rds_earliest = max((fin(a) for a in nodes["datastore"]["after"]), default=0.0)
    polls = {}
    runs = by_op.get("RunInstances", 0)
    if runs:
        polls["instance (DescribeInstances per round, all nodes)"] = by_op.get("DescribeInstances", 0)
    if by_op.get("CreateDBInstance"):
        created = rds[0]
        polls["database (DescribeDBInstances)"] = sum(
            1 for c in calls if c["op"] == "DescribeDBInstances" and c["t"] > created)
    if by_op.get("CreateLoadBalancer"):
        created = next(c["t"] for c in calls if c["op"] == "CreateLoadBalancer")
        polls["load balancer (DescribeLoadBalancers)"] = sum(
            1 for c in calls if c["op"] == "DescribeLoadBalancers" and c["t"] > created)
    if by_op.get("ChangeResourceRecordSets"):
        polls["dns change (GetChange per change)"] = round(
            by_op.get("GetChange", 0) / by_op["ChangeResourceRecordSets"], 1)
    last_call = max((c["end"] or c["t"] for c in calls), default=0.0)
    # How long the calls took at the proxy: the model says CALL_MS; moto's own time beyond
    # it (many calls at once on a shared CPU) is charged to the tool like everything else.
    took = sorted(c["end"] - c["t"] for c in calls if c["end"] is not None)
    call_times = {"median": statistics.median(took) if took else None,
                  "p90": took[int(len(took) * 0.9)] if took else None,
                  "max": took[-1] if took else None,
                  "over": sum(1 for x in took if x > (CALL_MS + 5) / 1000.0), "of": len(took)}
    return {"wall": res["wall"], "critical": critical, "ratio": res["wall"] / critical,
            "path": path, "model_trips": len(nodes),
            "tool_critical": tool_critical, "tool_ratio": res["wall"] / tool_critical,
            "delays": delays[:3], "calls": len(calls), "by_op": by_op,
            "first_call": first_call, "first_change": first_change,
            "preflight": preflight, "call_times": call_times,
            "early_calls": [(round(c["t"] * 1000, 1), None if c["end"] is None else
                             round(c["end"] * 1000, 1), c["op"]) for c in calls
                            if c["t"] <= first_change],
            "call_log": [(round(c["t"] * 1000, 1), None if c["end"] is None else
                          round(c["end"] * 1000, 1), c["op"], c.get("id") or c.get("target"))
                         for c in calls],
            "after_last_call": res["wall"] - last_call,
            "rds_start": rds[0] if rds else None,
            "rds_earliest": rds_earliest, "polls": polls, "rss_kib": res["rss_kib"],
            "steps": len(steps),
            "timeline": sorted((round(s["start"], 3), round(s["end"], 3), f"{s['step']} {s['id']}",
                                [f"{a[1]} {a[0]}" for a in s["after"]]) for s in steps.values())}


def env_vars(proxy):
    env = dict(os.environ, AWS_ENDPOINT_URL=proxy.url, AWS_ACCESS_KEY_ID="bench",
               AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1", NO_COLOR="1")
    env.pop("AWS_PROFILE", None)
    return env


def cycle(proxy, env, topology, nodes, runs, name):
    """`runs` x (apply from nothing, no-op plans, destroy); the per-run results."""
    out = []
    for i in range(runs):
        work = tempfile.mkdtemp(prefix=f"bench-{name}-")
        # A name per run: moto keeps a destroyed database's automated snapshot, named
        # after the instance and the minute, and refuses a second one.
        write_env(work, f"{name}{i}", topology, nodes)
        # The first plan of an env makes the registry's CA and password (once per
        # environment, timed apart: first_plan); its resources are what the model builds.
        proxy.reset(MODEL)
        first = run(["plan", "--json"], work, env)
        actions = json.loads("".join(line for _, line in first["lines"]))["actions"]
        proxy.reset(MODEL)
        res = run(["apply", "--yes", "--json", *APPLY_ARGS], work, env)
        a = analyse_apply(res, proxy.calls(), actions)
        a["first_plan"] = first["wall"]
        noops = []
        for _ in range(3):
            proxy.reset(MODEL)
            r = run(["plan"], work, env)
            calls = proxy.calls()
            by_op = {}
            for c in calls:
                key = f"{c['service']}:{c['op']}"
                by_op[key] = by_op.get(key, 0) + 1
            noops.append({"wall": r["wall"], "calls": len(calls), "by_op": by_op,
                          "first_call": calls[0]["t"] - r["start"], "rss_kib": r["rss_kib"]})
        a["noop"] = noops
        proxy.reset(None)
        run(["destroy", "--yes", "--skip-final-snapshot"], work, env)
        shutil.rmtree(work)
        out.append(a)
    return out


def mn(xs):
    return min(xs)


def md(xs):
    return statistics.median(xs)


def fmt_s(x):
    return f"{x:.2f} s"


def main():
    failures = []
    moto_port = free_port()
    moto = subprocess.Popen([args.moto, "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy = None
    try:
        wait_http(f"http://127.0.0.1:{moto_port}/moto-api/")
        proxy = Proxy(moto_port)
        env = env_vars(proxy)
        boto3.client("route53", endpoint_url=f"http://127.0.0.1:{moto_port}", region_name="us-east-1",
                     aws_access_key_id="b", aws_secret_access_key="b").create_hosted_zone(
            Name="lab.example.com", CallerReference="bench")
        # Warm the emulator (its services load on first use): one apply and destroy of
        # each topology without the model, not timed.
        for topology in args.topologies.split(","):
            work = tempfile.mkdtemp(prefix="bench-warm-")
            write_env(work, "warm", topology, None)
            proxy.reset(None)
            run(["apply", "--yes"], work, env)
            run(["destroy", "--yes", "--skip-final-snapshot"], work, env)
            shutil.rmtree(work)

        results = {}
        print(f"Latency model: {CALL_MS} ms per call; instance {INSTANCE_S:g} s, RDS {DB_S:g} s, "
              f"NLB {LB_S:g} s, Route53 change {DNS_S:g} s. {args.runs} runs each; min / median.\n")
        print("Apply: `provision apply --yes --json` timed from process start to exit (its plan "
              "included); ratio = wall / the critical path of the benchmark's AWS model.\n")
        print("| topology | steps | apply wall | critical path (AWS model) | ratio | first change at | "
              "last answer → exit | API calls (model's round trips) | RDS started at (earliest in "
              "the model) | longest ready-but-not-started | secondary: tool's own graph, ratio |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
        for topology in args.topologies.split(","):
            rs = cycle(proxy, env, topology, None, args.runs, f"b{topology.replace('-', '')}")
            results[topology] = rs
            walls = [r["wall"] for r in rs]
            ratios = [r["ratio"] for r in rs]
            crit = rs[0]["critical"]
            rds = [r["rds_start"] for r in rs if r["rds_start"] is not None]
            rds_txt = (f"{md(rds):.2f} s ({rs[0]['rds_earliest']:.2f} s)" if rds else "no RDS")
            worst = max((d for r in rs for d in r["delays"]), default=(0, ""))
            print(f"| {topology} | {rs[0]['steps']} | {fmt_s(mn(walls))} / {fmt_s(md(walls))} | "
                  f"{fmt_s(crit)} | {mn(ratios):.3f} / **{md(ratios):.3f}** | "
                  f"{md([r['first_change'] for r in rs]) * 1000:.0f} ms | "
                  f"{md([r['after_last_call'] for r in rs]) * 1000:.0f} ms | "
                  f"{rs[0]['calls']} ({rs[0]['model_trips']}) | {rds_txt} | "
                  f"{worst[0] * 1000:.0f} ms ({worst[1]}) | "
                  f"{fmt_s(rs[0]['tool_critical'])}, {md([r['tool_ratio'] for r in rs]):.3f} |")
            if md(ratios) > TARGET_RATIO:
                failures.append(f"{topology}: apply is {md(ratios):.3f}x the critical path of the "
                                f"AWS model (median), target {TARGET_RATIO}x")
            # The emulator must keep to the model, or the ratios measure the machine: on a
            # busy box moto answers the calls that arrive together one after another.
            p90 = md([r["call_times"]["p90"] for r in rs if r["call_times"]["of"]])
            if p90 * 1000 > TARGET_CALL_P90_MS:
                failures.append(f"{topology}: the emulator is slower than the model (90th "
                                f"percentile of the call times {p90 * 1000:.0f} ms, median of "
                                f"the runs; at most {TARGET_CALL_P90_MS} ms): the machine is too "
                                f"busy for these figures")
            spreads = [r["preflight"]["last_sent"] - r["preflight"]["first_sent"] for r in rs
                       if r["preflight"]["calls"]]
            if spreads and min(spreads) * 1000 >= CALL_MS:
                failures.append(f"{topology}: the preflight reads went out over "
                                f"{min(spreads) * 1000:.0f} ms in every run (at least one "
                                f"{CALL_MS} ms call apart: one waited for another)")
        print()
        for topology, rs in results.items():
            r = rs[0]
            print(f"**{topology}**: critical path (AWS model) {' → '.join(r['path'])}.")
            pf = r["preflight"]
            if pf["calls"]:
                print(f"Before the first change ({r['first_change'] * 1000:.0f} ms after start): "
                      f"{pf['reads_before_change']} reads; the {pf['calls']} preflight reads "
                      f"({', '.join(pf['ops'])}) sent {pf['first_sent'] * 1000:.0f}–"
                      f"{pf['last_sent'] * 1000:.0f} ms after start, the last answered at "
                      f"{pf['last_answered'] * 1000:.0f} ms. First plan of the environment "
                      f"(makes the registry CA and password; untimed): {r['first_plan']:.2f} s.")
            ct = r["call_times"]
            if ct["of"]:
                print(f"Calls at the proxy took {ct['median'] * 1000:.0f} ms (median), "
                      f"{ct['p90'] * 1000:.0f} ms (90th percentile), {ct['max'] * 1000:.0f} ms "
                      f"(max); {ct['over']} of {ct['of']} over {CALL_MS + 5} ms (the emulator's "
                      f"own time beyond the model's {CALL_MS} ms counts against the tool).")
            print(f"Polls per wait: " + "; ".join(f"{k} {v}" for k, v in r["polls"].items()) + ".")
            ops = sorted(r["by_op"].items(), key=lambda kv: (-kv[1], kv[0]))
            print("Apply calls by operation: " + ", ".join(f"{op} {n}" for op, n in ops) + ".\n")

        print("No-op plan (after the apply; 20 ms per call):\n")
        print("| topology | API calls | of which per-resource attribute reads | wall | start-up (process start → first call) | peak RSS |")
        print("|---|---:|---:|---:|---:|---:|")
        for topology, rs in results.items():
            noops = [n for r in rs for n in r["noop"]]
            walls = [n["wall"] for n in noops]
            starts = [n["first_call"] for n in noops]
            per_resource = sum(n for o, n in noops[0]["by_op"].items() if o in PER_RESOURCE_READS)
            print(f"| {topology} | {noops[0]['calls']} | {per_resource} | "
                  f"{fmt_s(mn(walls))} / {fmt_s(md(walls))} | {mn(starts) * 1000:.0f} / "
                  f"{md(starts) * 1000:.0f} ms | {max(n['rss_kib'] for n in noops) / 1024:.1f} MiB |")
            if md(walls) >= TARGET_NOOP_S:
                failures.append(f"{topology}: no-op plan takes {md(walls):.2f} s (median), target < {TARGET_NOOP_S} s")
            if md(starts) >= TARGET_STARTUP_S:
                failures.append(f"{topology}: first call {md(starts) * 1000:.0f} ms after start (median), target < 100 ms")
            many = [o for o, n in noops[0]["by_op"].items() if n > 1 and o not in PER_RESOURCE_READS]
            if many:
                failures.append(f"{topology}: no-op plan calls these more than once: {', '.join(sorted(many))}")
        for topology, rs in results.items():
            ops = sorted(rs[0]["noop"][0]["by_op"].items(), key=lambda kv: (-kv[1], kv[0]))
            print(f"\n{topology} no-op plan calls: " + ", ".join(f"{o} {n}" for o, n in ops) + ".")

        if args.scale:
            sizes = [int(n) for n in args.scale.split(",")]
            print("\nScale (k3s):\n")
            print("| nodes | steps | apply wall | critical path (AWS model) | ratio | API calls | calls per node | no-op plan calls | peak RSS |")
            print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            scale = {}
            for n in sizes:
                rs = cycle(proxy, env, "k3s", n, args.runs, f"s{n}")
                scale[n] = rs
                walls = [r["wall"] for r in rs]
                print(f"| {n} | {rs[0]['steps']} | {fmt_s(mn(walls))} / {fmt_s(md(walls))} | "
                      f"{fmt_s(rs[0]['critical'])} | {md([r['ratio'] for r in rs]):.3f} | {rs[0]['calls']} | "
                      f"{rs[0]['calls'] / n:.1f} | {rs[0]['noop'][0]['calls']} | "
                      f"{max(r['rss_kib'] for r in rs) / 1024:.1f} MiB |")
            results["scale"] = {str(k): v for k, v in scale.items()}
            lo, hi = min(sizes), max(sizes)
            noop_calls = {n: scale[n][0]["noop"][0]["calls"] for n in sizes}
            if len(set(noop_calls.values())) > 1:
                failures.append(f"scale: no-op plan calls grow with the nodes: {noop_calls}")
            grow = md([r["wall"] for r in scale[hi]]) / md([r["wall"] for r in scale[lo]])
            extra = (scale[hi][0]["calls"] - scale[lo][0]["calls"]) / (hi - lo)
            print(f"\n{hi} nodes take {grow:.2f}x the wall time of {lo} (medians); each extra node "
                  f"costs {extra:.1f} API calls.")
            if grow > TARGET_SCALE:
                failures.append(f"scale: {hi} nodes take {grow:.2f}x the time of {lo}, target {TARGET_SCALE}x")
        print(f"\nBinary: {os.path.getsize(binary) / 1024 / 1024:.1f} MiB ({os.path.relpath(binary, root)}).")
        if args.json:
            json.dump(results, open(args.json, "w"), indent=1, default=str)
    finally:
        if proxy:
            proxy.proc.terminate(); proxy.proc.wait()
        moto.terminate(); moto.wait()
    if failures:
        print("\nTargets missed:\n" + "\n".join(f"- {f}" for f in failures))
        sys.exit(1)
    print("\nEvery target met.")


main()
