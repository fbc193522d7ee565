"""A reference media processor for mediagate: the receiver of a webhook workflow that follows
its outcome (`track_outcome = true`).

For each `upload.completed` trigger it reports `running`, downloads the uploaded object,
makes a 240p H.264/AAC MP4 rendition and a JPEG cover with ffmpeg, uploads both under the
workflow's `output_prefix`, and reports `succeeded` with them (or `failed` with a code).

    python processor.py --listen 127.0.0.1:8090 --secret whsec_... \
        --endpoint http://127.0.0.1:7480 --access-key AK --secret-key SK [--region us-east-1]

Needs Python 3.9+, boto3, and ffmpeg/ffprobe on the PATH. Logs one line per step to stderr.
"""
import argparse
import base64
import binascii
import collections
import hashlib
import hmac
import http.server
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

import boto3
import botocore.config

MAX_BODY = 1024 * 1024
MAX_SKEW_SECONDS = 300
FFMPEG_TIMEOUT_SECONDS = 3600
REPORT_ATTEMPTS = 6


def log(*words):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(stamp, "processor", *words, file=sys.stderr, flush=True)


# --- Standard Webhooks signatures: mediagate's deliveries and our reports ---------------------

def signing_key(secret):
    """A `whsec_` secret is base64 after the prefix; any other secret is used as it is."""
    if secret.startswith("whsec_"):
        encoded = secret[len("whsec_"):]
        try:
            return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except binascii.Error:
            pass
    return secret.encode()


def signature(key, msg_id, timestamp, body):
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verified(key, headers, body):
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    if not msg_id or not timestamp.isdigit():
        return False
    if abs(time.time() - int(timestamp)) > MAX_SKEW_SECONDS:
        return False
    expected = signature(key, msg_id, timestamp, body).encode()
    # The header may list several signatures (a secret being rotated): any one will do.
    offered = headers.get("webhook-signature", "").split()
    return any(hmac.compare_digest(expected, o.encode()) for o in offered)


def send_report(key, url, report):
    """POSTs one signed report. Its `webhook-id` stays the same across retries, so mediagate
    records it once even when an answer was lost."""
    body = json.dumps(report).encode()
    msg_id = f"rep_{uuid.uuid4().hex}"
    trigger, state = report["trigger_id"], report["state"]
    for attempt in range(1, REPORT_ATTEMPTS + 1):
        timestamp = str(int(time.time()))
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": signature(key, msg_id, timestamp, body),
        })
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                log(f"trigger={trigger}", f"reported {state}: HTTP {r.status}")
                return True
        except urllib.error.HTTPError as e:
            status, detail = e.code, e.read(300).decode(errors="replace")
        except OSError as e:
            status, detail = None, str(e)
        if status == 409:
            # The outcome had already ended (a report of ours that got through before).
            log(f"trigger={trigger}", f"reported {state}: already finished")
            return True
        # 5xx (among them 503 delivery_pending: our answer to the delivery is still being
        # recorded) and network errors are worth another try; other refusals are final.
        if status is not None and status < 500:
            log(f"trigger={trigger}", f"report {state} refused: HTTP {status} {detail}")
            return False
        log(f"trigger={trigger}", f"report {state} attempt {attempt} failed:",
            f"HTTP {status} {detail}" if status else detail)
        if attempt < REPORT_ATTEMPTS:
            time.sleep(min(0.5 * 2 ** (attempt - 1), 30))
    return False


# --- The work: download, ffmpeg, upload, report -----------------------------------------------

class Failure(Exception):
    """A failed step: `code` and `message` go into the `failed` report."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code, self.message = code, message


def run(command, what):
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=FFMPEG_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise Failure(f"{what}_timeout", f"{what} took longer than {FFMPEG_TIMEOUT_SECONDS} s")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise Failure(f"{what}_failed", f"{what} exited {done.returncode}: {last[:300]}")
    return done.stdout


def probe(path):
    """Width, height (of the first video stream, if any) and duration in ms of a media file."""
    out = run(["ffprobe", "-v", "error", "-show_entries",
               "stream=codec_type,width,height:format=duration", "-of", "json", path], "ffprobe")
    info = json.loads(out)
    video = next((s for s in info.get("streams", []) if s.get("codec_type") == "video"), {})
    duration = info.get("format", {}).get("duration")
    return {"width": video.get("width"), "height": video.get("height"),
            "duration_ms": round(float(duration) * 1000) if duration else None}


class Processor:
    def __init__(self, args):
        self.key = signing_key(args.secret)
        self.s3 = boto3.client(
            "s3", endpoint_url=args.endpoint, region_name=args.region,
            aws_access_key_id=args.access_key, aws_secret_access_key=args.secret_key,
            config=botocore.config.Config(
                s3={"addressing_style": "path"},
                # Plain SigV4 requests: not every S3-compatible store takes checksum trailers.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def process(self, event):
        trigger, url = event["id"], event["report_url"]
        send_report(self.key, url, {"trigger_id": trigger, "state": "running"})
        try:
            outputs = self.transcode(event)
        except Failure as e:
            log(f"trigger={trigger}", f"failed: {e.code}: {e.message}")
            report = {"trigger_id": trigger, "state": "failed",
                      "error": {"code": e.code, "message": e.message}}
        except Exception as e:  # noqa: BLE001 - whatever went wrong, mediagate is told
            log(f"trigger={trigger}", f"failed: {type(e).__name__}: {e}")
            report = {"trigger_id": trigger, "state": "failed",
                      "error": {"code": "internal", "message": type(e).__name__}}
        else:
            report = {"trigger_id": trigger, "state": "succeeded", "outputs": outputs}
        send_report(self.key, url, report)

    def transcode(self, event):
        trigger = event["id"]
        out_bucket = event["output_bucket"]
        # Something unique per trigger, so a reprocessed upload never overwrites earlier outputs.
        out_prefix = f"{event.get('output_prefix') or ''}{trigger}/"
        with tempfile.TemporaryDirectory(prefix="mediagate-processor-") as tmp:
            source = os.path.join(tmp, "source")
            log(f"trigger={trigger}", f"downloading {event['bucket']}/{event['object_key']}")
            try:
                self.s3.download_file(event["bucket"], event["object_key"], source)
            except Exception as e:
                raise Failure("input_unreadable", f"downloading the upload: {type(e).__name__}")
            duration_ms = probe(source)["duration_ms"] or 0
            video, cover = os.path.join(tmp, "video.mp4"), os.path.join(tmp, "cover.jpg")
            log(f"trigger={trigger}", "making the 240p rendition")
            run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", source,
                 "-vf", "scale=-2:240", "-c:v", "libx264", "-preset", "veryfast",
                 "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k",
                 "-movflags", "+faststart", video], "ffmpeg")
            log(f"trigger={trigger}", "making the cover")
            at = min(1.0, duration_ms / 2000)  # a second in, or mid-way through a short clip
            run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-ss", f"{at:.3f}", "-i", source,
                 "-frames:v", "1", "-q:v", "3", cover], "ffmpeg")
            outputs = []
            for name, kind, path, fmt, content_type in [
                ("240p", "video", video, "mp4", "video/mp4"),
                ("cover", "image", cover, "jpg", "image/jpeg"),
            ]:
                key = out_prefix + os.path.basename(path)
                log(f"trigger={trigger}", f"uploading {out_bucket}/{key}")
                try:
                    self.s3.upload_file(path, out_bucket, key,
                                        ExtraArgs={"ContentType": content_type})
                except Exception as e:
                    raise Failure("output_write_failed", f"uploading {name}: {type(e).__name__}")
                info = probe(path)
                output = {"name": name, "kind": kind, "bucket": out_bucket, "key": key,
                          "format": fmt, "width": info["width"], "height": info["height"],
                          "size": os.path.getsize(path)}
                if kind == "video":
                    output["duration_ms"] = info["duration_ms"]
                outputs.append(output)
            return outputs


# --- The receiver: verify, answer at once, work in the background -----------------------------

def serve(args):
    processor = Processor(args)
    jobs = queue.Queue(maxsize=args.queue)
    seen = collections.OrderedDict()  # webhook-ids taken, oldest first (mediagate retries)
    seen_lock = threading.Lock()

    def worker():
        while True:
            event = jobs.get()
            try:
                processor.process(event)
            except Exception as e:  # noqa: BLE001 - one bad job never stops the worker
                log(f"trigger={event.get('id')}", f"worker error: {type(e).__name__}: {e}")

    for _ in range(args.workers):
        threading.Thread(target=worker, daemon=True).start()

    class Receiver(http.server.BaseHTTPRequestHandler):
        def answer(self, status):
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_GET(self):  # a health check
            self.answer(200)

        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                return self.answer(413)
            body = self.rfile.read(length)
            if not verified(processor.key, self.headers, body):
                log("refused a delivery: bad or stale signature")
                return self.answer(401)
            msg_id = self.headers["webhook-id"]
            try:
                event = json.loads(body)
            except ValueError:
                return self.answer(400)
            if event.get("type") != "upload.completed" or "report_url" not in event:
                log(f"trigger={msg_id}", f"ignored {event.get('type')}",
                    f"({event.get('reason') or 'no report_url: untracked workflow'})")
                return self.answer(204)
            with seen_lock:
                if msg_id in seen:
                    log(f"trigger={msg_id}", "repeat delivery, already taken")
                    return self.answer(202)
                try:
                    jobs.put_nowait(event)
                except queue.Full:
                    log(f"trigger={msg_id}", "queue full: mediagate will retry")
                    return self.answer(503)
                seen[msg_id] = True
                while len(seen) > 10_000:
                    seen.popitem(last=False)
            log(f"trigger={msg_id}", f"accepted {event['bucket']}/{event['object_key']}")
            self.answer(202)

        def log_message(self, *args):
            pass

    host, _, port = args.listen.rpartition(":")
    server = http.server.ThreadingHTTPServer((host or "127.0.0.1", int(port)), Receiver)
    server.daemon_threads = True
    log(f"listening on {args.listen}, {args.workers} at a time, queue of {args.queue}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", required=True, help="HOST:PORT for mediagate's deliveries")
    # Secrets can come from the environment instead, out of sight of `ps`.
    secret = os.environ.get("WEBHOOK_SECRET")
    p.add_argument("--secret", default=secret, required=secret is None,
                   help="the workflow's webhook_secret (or $WEBHOOK_SECRET)")
    p.add_argument("--endpoint", help="S3 endpoint URL (default: AWS)")
    p.add_argument("--access-key", help="(default: boto3's own, e.g. $AWS_ACCESS_KEY_ID)")
    p.add_argument("--secret-key", help="(default: boto3's own, e.g. $AWS_SECRET_ACCESS_KEY)")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--workers", type=int, default=2, help="triggers processed at a time")
    p.add_argument("--queue", type=int, default=32, help="triggers waiting, at most")
    serve(p.parse_args())


if __name__ == "__main__":
    main()
