"""A webhook receiver for the demo: verifies Standard Webhooks signatures the way a receiver
should and appends each delivery, with the verdict, as one JSON line to a file.

    python webhook_receiver.py PORT SECRET OUT_FILE
"""
import base64
import hashlib
import hmac
import http.server
import json
import sys
import time

PORT, SECRET, OUT = int(sys.argv[1]), sys.argv[2], sys.argv[3]
KEY = base64.b64decode(SECRET.removeprefix("whsec_")) if SECRET.startswith("whsec_") else SECRET.encode()


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        msg_id = self.headers.get("webhook-id", "")
        ts = self.headers.get("webhook-timestamp", "")
        expected = base64.b64encode(
            hmac.new(KEY, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
        ).decode()
        offered = [s.split(",", 1)[1] for s in self.headers.get("webhook-signature", "").split()
                   if s.startswith("v1,")]
        fresh = ts.isdigit() and abs(time.time() - int(ts)) < 300
        verified = fresh and any(hmac.compare_digest(expected, o) for o in offered)
        with open(OUT, "a") as f:
            f.write(json.dumps({"verified": verified, "webhook-id": msg_id,
                                "event": json.loads(body or b"{}")}) + "\n")
        self.send_response(200 if verified else 401)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", PORT), Receiver).serve_forever()
