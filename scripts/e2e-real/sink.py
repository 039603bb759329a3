#!/usr/bin/env python3
"""A webhook receiver for the e2e run: appends each alert of every POST as
one JSON line to the file named first, listening on the port named second."""
import http.server
import json
import sys

OUT, PORT = sys.argv[1], int(sys.argv[2])


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        alerts = json.loads(body).get("alerts", [])
        with open(OUT, "a") as f:
            for a in alerts:
                f.write(json.dumps(a) + "\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
