#!/usr/bin/env bash
# The main job against a local AWS emulator (moto server): a k3s environment from
# `init` to `destroy`. Everything happens under ./demo; the emulator is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-.venv/bin/python}
MOTO_SERVER=${MOTO_SERVER:-.venv/bin/moto_server}
BIN=${PROVISION_BIN:-$ROOT/target/debug/provision}
# The demo works inside ./demo: a relative interpreter path is taken from here.
case $PYTHON in */*) [ "${PYTHON#/}" != "$PYTHON" ] || PYTHON=$ROOT/$PYTHON ;; esac

PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
rm -rf demo && mkdir -p demo
"$MOTO_SERVER" -H 127.0.0.1 -p "$PORT" >demo/moto.log 2>&1 &
MOTO_PID=$!
trap 'kill $MOTO_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  if "$PYTHON" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/moto-api/')" 2>/dev/null; then break; fi
  sleep 0.2
done

export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=us-east-1
unset AWS_PROFILE || true

# The existing public zone the config names (in real AWS you already have it).
"$PYTHON" - <<PY
import boto3
r53 = boto3.client("route53", endpoint_url="$AWS_ENDPOINT_URL", region_name="us-east-1")
r53.create_hosted_zone(Name="lab.example.com", CallerReference="demo-zone")
PY

cd demo
step() { printf '\n\033[1m$ provision %s\033[0m\n' "$*"; "$BIN" "$@"; }

step init --topology k3s
# Point the template at an image the emulator knows, add a key, and poll fast.
ssh-keygen -q -t ed25519 -N '' -f ./id_ed25519 -C demo 2>/dev/null || \
  "$PYTHON" -c "import base64,os; b=b'\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20'+os.urandom(32); open('id_ed25519.pub','w').write('ssh-ed25519 '+base64.b64encode(b).decode()+' demo\n')"
sed -i 's/^ami = .*/ami = "ami-785db401"/' provision.toml
sed -i 's|^# *admin_cidrs = .*|admin_cidrs = ["203.0.113.0/24"]|' provision.toml
sed -i 's|^# *ssh_public_key = .*|ssh_public_key = "id_ed25519.pub"|' provision.toml
sed -i 's|^# *poll_seconds = .*|poll_seconds = 0.2|' provision.toml
step validate
step plan
step apply --yes
step apply --yes            # a second apply: no changes, no mutating call
step verify                 # the air gap holds and the install's paths exist
step show
step output
step output --json datastore_endpoint
step artifacts
ls -l state/lab/artifacts

# Fill the registry (NEXT-STEPS step 1). Two local docker-registry servers stand in: one
# for Docker Hub (plain HTTP, seeded with a few generated images), one for the registry
# host, run as its cloud-init runs it, with this environment's own certificate, key and
# htpasswd. `--via` sends the bytes there while TLS is checked as the registry's name.
"$PYTHON" "$ROOT/scripts/demo_registries.py" registries state/lab/secrets &
REG_PID=$!
trap 'kill $REG_PID 2>/dev/null || true; kill $MOTO_PID 2>/dev/null || true' EXIT
for _ in $(seq 150); do [ -f registries/ports ] && break; sleep 0.2; done
# shellcheck disable=SC1091
. registries/ports
step images pull --list registries/images.txt --source-registry "127.0.0.1:$SOURCE_PORT" --source-plain-http
step images push --via "127.0.0.1:$ENV_PORT"
step images verify --list registries/images.txt --via "127.0.0.1:$ENV_PORT"
step images pull --list registries/images.txt --source-registry "127.0.0.1:$SOURCE_PORT" --source-plain-http   # nothing new: one HEAD per image
kill $REG_PID 2>/dev/null || true
wait $REG_PID 2>/dev/null || true
step destroy --yes --skip-final-snapshot
step destroy --yes          # nothing left: a clean no-op
echo
echo "demo finished: every resource was created, shown and destroyed against the emulator on port $PORT, and the registry was filled through --via and verified"
