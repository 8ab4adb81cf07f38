#!/usr/bin/env python3
"""Fail when a dev-dependency changes the features of a crate the build shares with it.

`cargo build` (make demo) resolves features without dev-dependencies, `cargo test` with
them. A crate whose features differ is compiled twice, and with it everything above it —
the whole AWS SDK when it is libc, getrandom or tokio. Pin such features in
[dependencies] (see Cargo.toml). Usage: scripts/check-features.py (from the repo root).
"""
import re
import subprocess
import sys


def features(edges):
    out = subprocess.run(
        ["cargo", "tree", "-e", edges, "-f", "{p}|{f}", "--prefix", "none"],
        check=True, capture_output=True, text=True,
    ).stdout
    found = {}
    for line in out.splitlines():
        line = line.replace(" (*)", "").strip()
        if "|" not in line:
            continue
        pkg, feats = line.split("|", 1)
        pkg = re.sub(r" \(.*\)$", "", pkg)
        found.setdefault(pkg, set()).update(f for f in feats.split(",") if f)
    return found


build = features("no-dev")
test = features("normal,build,dev")
differ = [
    (pkg, sorted(build[pkg]), sorted(test[pkg]))
    for pkg in sorted(build)
    if pkg in test and build[pkg] != test[pkg]
]
for pkg, b, t in differ:
    print(f"{pkg}: build {b}, test {t}")
if differ:
    sys.exit("dev-dependencies change the features of the crates above: pin them in [dependencies]")
print(f"{len(build)} crates: the same features for cargo build and cargo test")
