#!/usr/bin/env python3
"""Stand-in for the site's paging and ticket services (a pager, a ticket system: none is
reachable here): the lab's Alertmanager sends its webhook notifications to it. Alertmanager's
webhook receiver POSTs one JSON object per notification (version "4": receiver, status, alerts
with their labels, groupLabels, ...; alertmanager's notify/webhook/webhook.go, and
docs/configuration.md <webhook_config>) and counts any 2xx as delivered. Each one is appended,
with the path it was sent to (/page/..., /ticket) and when it arrived, as a JSON line to LOG,
which the lab's tests read (tests/lab/converged/test_alerting.py).

  alert-receiver.py LISTEN_PORT LOG
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Receiver(BaseHTTPRequestHandler):
    log_file: Path

    def do_POST(self) -> None:
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        except ValueError:
            self.send_error(400, "not JSON")
            return
        line = json.dumps({"path": self.path, "received": time.time(), "notification": body})
        with self.log_file.open("a") as f:
            f.write(line + "\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def main() -> int:
    port, log = int(sys.argv[1]), Path(sys.argv[2])
    log.parent.mkdir(parents=True, exist_ok=True)
    Receiver.log_file = log
    ThreadingHTTPServer(("127.0.0.1", port), Receiver).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
