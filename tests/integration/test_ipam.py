"""podnet.fabric.ipam next to the real CNI host-local plugin, in one data directory.

host-local is Debian's containernetworking-plugins 1.1.1 binary (/usr/lib/cni/host-local), run
with CNI_COMMAND=ADD/DEL inside a throw-away namespace, exactly as a container runtime would;
the directory (a temporary one) is checked by reading its files, never through the module.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import VENV_BIN, ansible_env, unique

# ipam runs with pyroute2=False (files and fcntl locks only): one target interpreter, the nodes' own.
pytestmark = pytest.mark.single_target

HOST_LOCAL = "/usr/lib/cni/host-local"
NETWORK = "pnt-ipam"
SUBNET = "10.244.7.0/24"

# setup.sh installs containernetworking-plugins (requirements-apt.txt): a missing binary is a failure, not a skip.


def host_local(command, netns, container_id, data_dir, ifname="eth0"):
    conf = {"cniVersion": "0.4.0", "name": NETWORK, "type": "host-local",
            "ipam": {"type": "host-local", "ranges": [[{"subnet": SUBNET}]], "dataDir": str(data_dir)}}
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command, "CNI_CONTAINERID": container_id,
           "CNI_NETNS": "/run/netns/%s" % netns, "CNI_IFNAME": ifname, "CNI_PATH": "/usr/lib/cni"}
    proc = subprocess.run(["ip", "netns", "exec", netns, HOST_LOCAL], input=json.dumps(conf), env=env,
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, "host-local %s %s: %s%s" % (command, container_id, proc.stdout, proc.stderr)
    if command == "ADD":
        return json.loads(proc.stdout)["ips"][0]["address"].split("/")[0]
    return None


def files(data_dir):
    """{ip: (container id, ifname)} of the allocation files, read directly."""
    path = os.path.join(str(data_dir), NETWORK)
    out = {}
    for name in sorted(os.listdir(path)) if os.path.isdir(path) else []:
        if name[0].isdigit():
            with open(os.path.join(path, name), "rb") as f:
                cid, _crlf, ifname = f.read().decode().partition("\r\n")
            out[name] = (cid, ifname)
    return out


def ipam_task(data_dir, owner, ids, purge=False):
    return {"name": "ipam", "podnet.fabric.ipam": {
        "owner": owner, "purge": purge, "network": NETWORK, "data_dir": str(data_dir), "subnet": SUBNET,
        "allocations": [{"id": i} for i in ids]}}


def test_module_and_host_local_share_a_directory(playbook, netns, tmp_path):
    owner = unique("itest-ipam-")
    r = playbook([ipam_task(tmp_path, owner, ["a", "b"])], check=True)
    assert not r.failed and r[0]["changed"] and not os.path.exists(tmp_path / NETWORK), r
    r = playbook([ipam_task(tmp_path, owner, ["a", "b"])])
    assert not r.failed, r
    ours = r[0]["addresses"]
    assert sorted(ours) == ["a", "b"] and r[0]["prefixlen"] == 24 and r[0]["gateway"] == "10.244.7.1"

    cid1, cid2 = unique("c1"), unique("c2")
    ip1 = host_local("ADD", netns, cid1, tmp_path)
    ip2 = host_local("ADD", netns, cid2, tmp_path)
    assert len({ip1, ip2} | set(ours.values())) == 4               # nobody handed out one address twice

    r = playbook([ipam_task(tmp_path, owner, ["a", "b", "c"])])
    assert not r.failed and r[0]["addresses"]["c"] not in (ip1, ip2), r
    ours = r[0]["addresses"]
    on_disk = files(tmp_path)
    assert on_disk[ip1] == (cid1, "eth0") and on_disk[ip2] == (cid2, "eth0")
    assert all(on_disk[ip] == ("podnet.fabric:%s:%s" % (owner, i), "eth0") for i, ip in ours.items())
    assert len(on_disk) == 5

    # host-local's release leaves ours alone; ours (purge) leaves host-local's alone
    host_local("DEL", netns, cid1, tmp_path)
    assert files(tmp_path) == dict((ip, v) for ip, v in on_disk.items() if ip != ip1)
    r = playbook([ipam_task(tmp_path, owner, ["b"], purge=True)])
    assert not r.failed and r[0]["addresses"] == {"b": ours["b"]}, r
    assert files(tmp_path) == {ip2: (cid2, "eth0"), ours["b"]: ("podnet.fabric:%s:b" % owner, "eth0")}
    r = playbook([ipam_task(tmp_path, owner, ["b"], purge=True)], check=True)
    assert not r.failed and not r[0]["changed"], r

    # host-local allocates after the last reserved address, round the module's allocations
    ip3 = host_local("ADD", netns, unique("c3"), tmp_path)
    assert ip3 not in (ip2, ours["b"])
    host_local("DEL", netns, cid2, tmp_path)
    r = playbook([ipam_task(tmp_path, owner, [], purge=True)])
    assert not r.failed and list(files(tmp_path)) == [ip3], r


def test_two_concurrent_runs_never_hand_out_one_address_twice(target_python, tmp_path):
    owners = [unique("itest-ipam-"), unique("itest-ipam-")]
    procs = []
    for n, owner in enumerate(owners):
        play = [{"hosts": "localhost", "gather_facts": False,
                 "tasks": [ipam_task(tmp_path, owner, ["pod-%d" % i for i in range(20)])]}]
        path = tmp_path / ("play%d.yml" % n)
        path.write_text(json.dumps(play))
        cmd = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
               "-e", "ansible_python_interpreter=%s" % target_python, str(path)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ansible_env()))
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-3000:] + err[-3000:]
        results.append(json.loads(out)["plays"][0]["tasks"][0]["hosts"]["localhost"]["addresses"])
    handed = [ip for r in results for ip in r.values()]
    assert len(handed) == 40 and len(set(handed)) == 40
    on_disk = files(tmp_path)
    for owner, addresses in zip(owners, results):
        for ident, ip in addresses.items():
            assert on_disk[ip] == ("podnet.fabric:%s:%s" % (owner, ident), "eth0")
