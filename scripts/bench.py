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
    """Run one command; wall time and the peak RSS of that process alone (wait4)."""
    t = time.perf_counter()
    proc = subprocess.Popen([binary, *cmd], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    wall = time.perf_counter() - t
    # communicate() already reaped it; wait4 data comes from resource usage of the Popen.
    if proc.returncode != 0:
        sys.exit(f"provision {' '.join(cmd)} failed ({proc.returncode}):\n{err}")
    return wall, proc.rss_kib


_popen_wait = subprocess.Popen._try_wait


def _try_wait(self, wait_flags):
    """Reap with wait4 to keep the child's own rusage (ru_maxrss, KiB on Linux)."""
    try:
        pid, sts, usage = os.wait4(self.pid, wait_flags)
    except ChildProcessError:
        pid, sts = self.pid, 0
        usage = None
    if pid == self.pid and usage is not None:
        self.rss_kib = usage.ru_maxrss
    return (pid, sts)


subprocess.Popen._try_wait = _try_wait


print("| nodes | command | wall time | peak RSS |")
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
        boto3.client("route53", endpoint_url=url, region_name="us-east-1", aws_access_key_id="b", aws_secret_access_key="b").create_hosted_zone(Name="lab.example.com", CallerReference="bench")
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
