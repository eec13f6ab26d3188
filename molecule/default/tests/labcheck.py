"""Small checks shared by the lab tests (imported as ``from labcheck import ...``).

They run commands on a testinfra host and read the result with independent tools (``ip -json``,
``ping``), never with the code under test.
"""
from __future__ import annotations

import json


def ip_json(h, *args) -> list:
    """`ip -json <args>` run on testinfra host h, parsed (the independent view of the kernel)."""
    out = h.check_output("ip -json " + " ".join(args))
    return json.loads(out) if out.strip() else []


def ping(h, address: str, count: int = 1, ttl: int | None = None, wait: int = 2):
    """Ping from testinfra host h; returns the CommandResult (rc 0 = an answer came back)."""
    cmd = "ping -n -c %d -W %d" % (count, wait)
    if ttl is not None:
        cmd += " -t %d" % ttl
    return h.run("%s %s" % (cmd, address))
