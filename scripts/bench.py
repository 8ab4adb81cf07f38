"""End-to-end benchmark of `provision` against moto; see scripts/bench.sh."""
import argparse, base64, os, resource, shutil, socket, subprocess, sys, tempfile, time, urllib.request

import boto3

p = argparse.ArgumentParser()
p.add_argument("--moto", required=True)
p.add_argument("--bin", required=True)
p.add_argument("--nodes", default="2,5")
args = p.parse_args()
binary = os.path.abspath(args.bin)


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port


def run(cmd, cwd, env):
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    r = subprocess.run([binary, *cmd], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if r.returncode != 0:
        sys.exit(f"provision {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr}")
    # ru_maxrss of children is the max over all children so far; report it as an upper bound.
    return wall, max(rss, before)


print("| nodes | command | wall time | peak RSS (max so far) |")
print("|---:|---|---:|---:|")
for nodes in [int(n) for n in args.nodes.split(",")]:
    port = free_port()
    moto = subprocess.Popen([args.moto, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/moto-api/"); break
            except Exception:
                time.sleep(0.1)
        env = dict(os.environ, AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="b", AWS_SECRET_ACCESS_KEY="b", AWS_REGION="us-east-1")
        env.pop("AWS_PROFILE", None)
        boto3.client("route53", endpoint_url=url, region_name="us-east-1").create_hosted_zone(Name="lab.example.com", CallerReference="bench")
        work = tempfile.mkdtemp()
        key = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + os.urandom(32)).decode()
        open(os.path.join(work, "id.pub"), "w").write(f"ssh-ed25519 {key} bench\n")
        open(os.path.join(work, "provision.toml"), "w").write(f'''name = "bench"
region = "us-east-1"
topology = "k3s"
hostname = "rancher.lab.example.com"
[network]
admin_cidrs = ["203.0.113.0/24"]
[nodes]
ami = "ami-785db401"
count = {nodes}
ssh_public_key = "id.pub"
[dns]
zone = "lab.example.com"
[timeouts]
poll_seconds = 0.1
''')
        for label, cmd in [
            ("plan (empty env)", ["plan"]),
            ("apply", ["apply", "--yes"]),
            ("apply (no changes)", ["apply", "--yes"]),
            ("plan (no changes)", ["plan"]),
            ("destroy", ["destroy", "--yes", "--skip-final-snapshot"]),
        ]:
            wall, rss = run(cmd, work, env)
            print(f"| {nodes} | `{label}` | {wall:.2f} s | {rss / 1024:.1f} MiB |")
        shutil.rmtree(work)
    finally:
        moto.terminate(); moto.wait()
