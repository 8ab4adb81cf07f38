#!/usr/bin/env python3
"""Exit 0 when the running Python has exactly the `name==version` pins of a requirements
file installed, else print what differs and exit 1. `make venv` uses it to reinstall a
stale .venv (another moto, a missing package). Usage: check_pins.py REQUIREMENTS"""

import re
import sys
from importlib import metadata

PIN = re.compile(r"^\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def main():
    wrong = []
    with open(sys.argv[1], encoding="utf-8") as pins:
        for line in pins:
            match = PIN.match(line)
            if not match:
                continue
            name, _, want = match.groups()
            try:
                have = metadata.version(name)
            except metadata.PackageNotFoundError:
                have = None
            if have != want:
                wrong.append(f"{name}: want {want}, have {have or 'nothing'}")
    for w in wrong:
        print(f"stale venv: {w}", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
