"""End-to-end benchmark of `provision` under a latency model of AWS; see scripts/bench.sh.

The real binary talks to moto through tests/support/proxy.py, which applies the model:
every call takes CALL_MS, an instance is `pending` for INSTANCE_S after RunInstances, an
RDS instance `creating` for DB_S after CreateDBInstance, a load balancer `provisioning` for
LB_S, a Route53 change PENDING for DNS_S. For each topology it measures apply (wall time,
API calls by operation, polls per wait, when RDS started), compares the wall time with the
critical path of the same model over the apply's own step graph (the `after` of each
`step_started` event, weighted by MODEL_CALLS below), then the no-op plan (calls, time),
start-up time (process start to its first request at the proxy), peak RSS, binary size,
and for k3s the 3/10/50-node table. It asserts the issue's targets and exits 1 when one
is missed (after printing everything).
"""
import argparse, base64, json, os, shutil, socket, statistics, subprocess, sys, tempfile, time
import urllib.request

import boto3

CALL_MS = 20
INSTANCE_S, DB_S, LB_S, DNS_S = 2.0, 10.0, 4.0, 2.0
MODEL = {"call_ms": CALL_MS, "instance_s": INSTANCE_S, "db_instance_s": DB_S, "lb_s": LB_S,
         "dns_change_s": DNS_S}

# The critical path's weights: the round trips a step needs at least (calls that can go
# at once count once), times CALL_MS, plus the model's wait. Reads the tool makes beyond
# these (describes, polls, ownership checks it could skip) count against the tool.
MODEL_CALLS = {
    ("vpc", "create"): 2,                # CreateVpc; both ModifyVpcAttribute at once
    ("internet_gateway", "create"): 2,   # Create; Attach
    ("subnet", "create"): 1,             # CreateSubnet (+1: ModifySubnetAttribute, edge)
    ("route_table", "create"): 2,        # Create; associations and route at once
    ("security_group", "create"): 2,     # Create; its rules (ingress/egress) at once
    ("security_group", "update"): 1,     # the rules naming other groups
    ("key_pair", "create"): 1,
    ("secret", "create"): 1,
    ("volume", "create"): 1,
    ("instance", "create"): 1,           # RunInstances (+1: AttachVolume, registry)
    ("db_subnet_group", "create"): 1,
    ("database", "create"): 2,           # GetSecretValue; CreateDBInstance
    ("load_balancer", "create"): 1,      # Create (attributes while it provisions)
    ("target_group", "create"): 2,       # Create; attributes and targets at once
    ("listener", "create"): 1,
    ("hosted_zone", "create"): 1,
    ("dns_record", "create"): 2,         # the name's owner marker; the change
}
MODEL_WAIT = {"instance": INSTANCE_S, "database": DB_S, "load_balancer": LB_S,
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

p = argparse.ArgumentParser()
p.add_argument("--moto", required=True)
p.add_argument("--bin", required=True)
p.add_argument("--runs", type=int, default=3)
p.add_argument("--topologies", default="k3s,rke2,rke")
p.add_argument("--scale", default="3,5,9",
               help="k3s node counts ('' to skip); the product allows 1-9 servers, 50 nodes are "
                    "measured by `cargo bench --bench engine -- scale`")
p.add_argument("--json", help="also write the raw results here")
args = p.parse_args()
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
        return [dict(c, t=c["t"] + stats["epoch"]) for c in stats["calls"]]


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
    # so the poll cap shrinks with it (5 s on AWS).
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
poll_seconds = 0.1
''')


def weight(step):
    kind, verb, rid = step["kind"], step["step"], step["id"]
    calls = MODEL_CALLS.get((kind, verb), 1)
    if rid.startswith("subnet-edge") or rid == "registry":
        calls += 1
    return calls * CALL_MS / 1000.0 + (MODEL_WAIT.get(kind, 0.0) if verb == "create" else 0.0)


def analyse_apply(res, calls):
    """Steps, critical path of the model, scheduling delays, calls, polls, RDS start."""
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
    # Longest path over the step graph with the model's weights (a binary that does not
    # say what its steps wait for gets none: n/a).
    has_graph = any(s["after"] for s in steps.values())
    memo = {}

    def longest(key):
        if key not in memo:
            s = steps[key]
            memo[key] = weight(s) + max((longest(a) for a in s["after"] if a in steps), default=0.0)
        return memo[key]
    critical = max(longest(k) for k in steps)
    path, key = [], max(steps, key=longest)
    while key:
        path.append(f"{key[1]} {key[0]}")
        deps = [a for a in steps[key]["after"] if a in steps]
        key = max(deps, key=longest) if deps else None
    path.reverse()
    # How long each step sat ready (its dependencies done) before it started.
    first_start = min(s["start"] for s in steps.values())
    delays = []
    for key, s in steps.items():
        ready = max((steps[a]["end"] for a in s["after"] if a in steps), default=first_start)
        delays.append((s["start"] - ready, f"{s['step']} {s['id']}"))
    delays.sort(reverse=True)
    # Calls, relative to the process start.
    calls = [dict(c, t=c["t"] - res["start"]) for c in calls]
    by_op = {}
    for c in calls:
        by_op[c["op"]] = by_op.get(c["op"], 0) + 1
    first_call = calls[0]["t"] if calls else None
    rds = [c["t"] for c in calls if c["op"] == "CreateDBInstance"]
    rds_earliest = None
    if ("datastore", "create") in steps:
        s = steps[("datastore", "create")]
        rds_earliest = max((longest(a) for a in s["after"] if a in steps), default=0.0)
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
    if not has_graph:
        critical, path = float("nan"), ["(the binary does not report its step graph)"]
    return {"wall": res["wall"], "critical": critical, "ratio": res["wall"] / critical,
            "path": path, "delays": delays[:3], "calls": len(calls), "by_op": by_op,
            "first_call": first_call, "rds_start": rds[0] if rds else None,
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
        # The first plan of an env makes the registry's CA and password: not what is timed.
        run(["plan"], work, env)
        proxy.reset(MODEL)
        res = run(["apply", "--yes", "--json"], work, env)
        a = analyse_apply(res, proxy.calls())
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
        print("| topology | steps | apply wall | critical path (model) | ratio | API calls | "
              "RDS started at (earliest possible) | longest ready-but-not-started |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
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
                  f"{fmt_s(crit)} | {mn(ratios):.3f} / {md(ratios):.3f} | {rs[0]['calls']} | "
                  f"{rds_txt} | {worst[0] * 1000:.0f} ms ({worst[1]}) |")
            if md(ratios) > TARGET_RATIO:
                failures.append(f"{topology}: apply is {md(ratios):.3f}x the critical path (median), "
                                f"target {TARGET_RATIO}x")
        print()
        for topology, rs in results.items():
            r = rs[0]
            print(f"**{topology}**: critical path {' → '.join(r['path'])}.")
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
            print("| nodes | steps | apply wall | critical path | ratio | API calls | calls per node | no-op plan calls | peak RSS |")
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
