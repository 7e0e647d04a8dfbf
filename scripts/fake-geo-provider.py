#!/usr/bin/env python3
"""A stand-in for a Nominatim reverse geocoder and a webhook receiver, for
load runs on loopback (scripts/geo-load.sh). GET /reverse answers one fixed
address; POST /hook accepts a batch of events. Prints its counts every 5 s.

    scripts/fake-geo-provider.py PORT
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Without it, headers and body leave in two segments and Nagle plus
    # delayed ACKs add 40 ms to every answer.
    disable_nagle_algorithm = True
    counts = {"reverse": 0, "hook_posts": 0, "hook_events": 0}

    def log_message(self, *args):
        pass

    def answer(self, body):
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        Handler.counts["reverse"] += 1
        self.answer(json.dumps({"display_name": "测试地址 Test Street 1"}))

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.startswith("/hook"):
            Handler.counts["hook_posts"] += 1
            Handler.counts["hook_events"] += len(json.loads(body)["events"])
        self.answer("{}")


def report():
    while True:
        time.sleep(5)
        print(json.dumps(Handler.counts), flush=True)


ThreadingHTTPServer.daemon_threads = True
server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
threading.Thread(target=report, daemon=True).start()
server.serve_forever()
