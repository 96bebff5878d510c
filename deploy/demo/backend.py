#!/usr/bin/env python3
"""A demo backend: answers every GET with its own name, so you see who served you.

    backend.py ADDRESS PORT NAME      e.g. backend.py 127.0.0.11 8081 "us-east backend-1"
"""
import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{self.server.name}: hello from {self.server.server_address[0]}:{self.server.server_address[1]}\n"
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass  # HAProxy checks every 500 ms: no log line each time


def main():
    address, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    server = http.server.ThreadingHTTPServer((address, port), Handler)
    server.name = name
    print(f"{name} listening on {address}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
