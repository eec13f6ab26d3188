"""The pods' workloads on one node: a small HTTP server inside each pod's network namespace.

One process serves every pod of the node. For each pod listed in the JSON config (``id``,
``netns``, ``ports``) it joins the pod's namespace just long enough to open its listening
sockets (a socket stays in the namespace it was created in), then serves them from threads.
Every request is answered with one line that tests can assert on:

    pod=default/web-1 node=node1 client=10.244.2.3:51234 port=8080

Namespaces come and go (a pod re-created, a node rebooted and re-converged): once a second it
notices a namespace that appeared or was replaced and re-opens that pod's sockets.
"""
import ctypes
import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CLONE_NEWNET = 0x40000000
LIBC = ctypes.CDLL(None, use_errno=True)


def setns(fd):
    if LIBC.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        peer_ip, peer_port = self.client_address[0], self.client_address[1]
        fields = (self.server.pod_id, self.server.node, peer_ip, peer_port, self.server.server_address[1])
        body = "pod=%s node=%s client=%s:%d port=%d\n" % fields
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # one journal line per request would flood the journal
        pass


def listen_in(netns, ports):
    """Listening sockets for ``ports``, created inside /run/netns/NETNS."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(os.path.join("/run/netns", netns), os.O_RDONLY)
    socks = []
    try:
        setns(target)
        try:
            for port in ports:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("0.0.0.0", port))
                sock.listen(64)
                socks.append(sock)
        finally:
            setns(own)
    finally:
        os.close(target)
        os.close(own)
    return socks


def serve(sock, pod_id, node):
    server = ThreadingHTTPServer(sock.getsockname(), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.server_address = sock.getsockname()
    server.pod_id, server.node = pod_id, node
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


def netns_identity(netns):
    try:
        st = os.stat(os.path.join("/run/netns", netns))
        return (st.st_dev, st.st_ino)
    except OSError:
        return None


def main():
    with open(sys.argv[1]) as handle:
        config = json.load(handle)
    node = config["node"]
    running = {}  # pod id -> (netns identity, [servers])
    while True:
        for pod in config["pods"]:
            ident = netns_identity(pod["netns"])
            have = running.get(pod["id"])
            if have and have[0] == ident:
                continue
            if have:
                for server in have[1]:
                    server.shutdown()
                    server.server_close()
                del running[pod["id"]]
            if ident is None:
                continue
            try:
                servers = [serve(s, pod["id"], node) for s in listen_in(pod["netns"], pod["ports"])]
            except OSError as exc:
                print("pod %s: cannot listen in netns %s: %s" % (pod["id"], pod["netns"], exc), flush=True)
                continue
            running[pod["id"]] = (ident, servers)
            print("pod %s: serving ports %s in netns %s" % (pod["id"], pod["ports"], pod["netns"]), flush=True)
        time.sleep(1)


if __name__ == "__main__":
    main()
