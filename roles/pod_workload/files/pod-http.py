"""A pod's workload: answers every HTTP request with who answered and whom it saw.

Configured by environment (POD_ID, POD_NODE, POD_PORTS="8080 9090"); listens on every port on
all addresses of the pod's namespace. The body is one line, easy to assert on:
    pod=default/web-1 node=node1 client=10.244.2.3:51234 port=8080
"""
import os
import socketserver
import threading
from http.server import BaseHTTPRequestHandler

POD = os.environ.get("POD_ID", "unknown")
NODE = os.environ.get("POD_NODE", "unknown")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        peer_ip, peer_port = self.client_address[0], self.client_address[1]
        body = ("pod=%s node=%s client=%s:%d port=%d\n" % (POD, NODE, peer_ip, peer_port, self.server.server_address[1])).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # quiet: one line per request would flood the journal
        pass


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    ports = [int(p) for p in os.environ.get("POD_PORTS", "8080").split()]
    servers = [Server(("0.0.0.0", port), Handler) for port in ports]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers[1:]]
    for t in threads:
        t.start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
