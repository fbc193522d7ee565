#!/usr/bin/env bash
# The whole flow on this machine, with nothing but this repository: installs and starts a
# single-node Ceph RGW (S3 + STS), starts mediagate on SQLite configured for it and the
# reference processor (examples/processor, ffmpeg) as its webhook workflow's receiver, mints an
# app token, requests an upload, uploads a clip made with ffmpeg with boto3, and shows each
# step: the credentials (secret masked), the event RGW sent, the workflow matched, the upload
# going `processing` -> `ready` as the processor reports, the processor's log, the outputs'
# signed URLs, ffprobe reading the rendition through its URL, and the signed lifecycle events
# the app's backend was told ([events]). It also builds the web
# client's example page, serves it, prepares the bucket's CORS with `mediagate bucket setup`,
# and prints the page's URL.
# Everything it started is stopped on exit; with MEDIAGATE_DEMO_KEEP=1 it keeps running (the
# page usable in a browser) until Ctrl-C.
#   MEDIAGATE_DEMO_PORT (18080), MEDIAGATE_DEMO_HOOK_PORT (18090, the processor),
#   MEDIAGATE_DEMO_EVENTS_PORT (18091, the app backend's receiver) and MEDIAGATE_DEMO_PAGE_PORT
#   (18070) choose the local ports.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${MEDIAGATE_DEMO_PORT:-18080}
HOOK_PORT=${MEDIAGATE_DEMO_HOOK_PORT:-18090}
EVENTS_PORT=${MEDIAGATE_DEMO_EVENTS_PORT:-18091}
PAGE_PORT=${MEDIAGATE_DEMO_PAGE_PORT:-18070}
WORK=$(mktemp -d /tmp/mediagate-demo.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  scripts/rgw.sh stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
random() { python3 -c 'import secrets;print(secrets.token_urlsafe(32))'; }

step "1. Building mediagate and preparing the S3 client (boto3) and ffmpeg"
scripts/build-deps.sh
cargo build --locked --quiet
scripts/processor.sh install
PY=$(scripts/python.sh)
S3CLIENT=tests/e2e/s3client.py

step "2. Starting Ceph RGW (S3 + STS with enforced session policies)"
RGW=$(scripts/rgw.sh start)
echo "RGW at $RGW; role arn:aws:iam:::role/uploader"

step "3. Starting mediagate on SQLite, configured for RGW"
JWT_SECRET=$(random); ADMIN_TOKEN=$(random); S3_TOKEN=$(random)
HOOK_SECRET="whsec_$(python3 -c 'import base64,secrets;print(base64.b64encode(secrets.token_bytes(24)).decode())')"
EVENTS_SECRET="whsec_$(python3 -c 'import base64,secrets;print(base64.b64encode(secrets.token_bytes(24)).decode())')"
cat > "$WORK/mediagate.toml" <<CONF
[server]
listen = "127.0.0.1:$PORT"
public_url = "http://127.0.0.1:$PORT"
cors_origins = ["http://127.0.0.1:$PAGE_PORT"]
[database]
url = "sqlite://$WORK/mediagate.db"
[auth]
jwt_secret = "$JWT_SECRET"
admin_token = "$ADMIN_TOKEN"
[storage]
provider = "s3"
bucket = "media-input"
region = "us-east-1"
endpoint = "$RGW"
path_style = true
prefix = "uploads/"
[sts]
endpoint = "$RGW"
access_key_id = "TESTERAK"
access_key_secret = "TESTERSK"
role_arn = "arn:aws:iam:::role/uploader"
[notifications]
s3_token = "$S3_TOKEN"
[events]
webhook_url = "http://127.0.0.1:$EVENTS_PORT/events"
webhook_secret = "$EVENTS_SECRET"
types = ["upload.processing", "upload.ready", "upload.failed", "upload.rejected"]
[[workflows]]
name = "demo-transcode"
state = "Active"
bucket = "media-input"
prefix = "uploads/"
sink = "webhook"
webhook_url = "http://127.0.0.1:$HOOK_PORT/hooks"
webhook_secret = "$HOOK_SECRET"
track_outcome = true
output_prefix = "outputs/"
CONF
target/debug/mediagate check-config --config "$WORK/mediagate.toml"
# The reference processor: reads uploads and writes its outputs with its own keys.
scripts/processor.sh --listen "127.0.0.1:$HOOK_PORT" --secret "$HOOK_SECRET" --endpoint "$RGW" \
  --access-key TESTERAK --secret-key TESTERSK --region us-east-1 2>"$WORK/processor.log" &
PIDS+=($!)
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$HOOK_PORT/" && break; sleep 0.1; done
curl -sf -o /dev/null "http://127.0.0.1:$HOOK_PORT/" || { cat "$WORK/processor.log"; echo "the processor did not start" >&2; exit 1; }
echo "reference processor at http://127.0.0.1:$HOOK_PORT/hooks (examples/processor/processor.py)"
# The app's own backend, told of upload changes ([events]); it checks each signature.
"$PY" tests/e2e/webhook_receiver.py "$EVENTS_PORT" "$EVENTS_SECRET" "$WORK/events.jsonl" &
PIDS+=($!)
target/debug/mediagate serve --config "$WORK/mediagate.toml" >"$WORK/mediagate.log" 2>&1 &
PIDS+=($!)
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -sf -o /dev/null "$BASE/readyz" && break; sleep 0.1; done
curl -sf "$BASE/readyz" >/dev/null || { cat "$WORK/mediagate.log"; echo "mediagate did not start" >&2; exit 1; }
echo "mediagate at $BASE (log: its stderr, shown below as it matters)"

# The store owner creates the bucket and points its notifications at mediagate.
"$PY" "$S3CLIENT" setup "$(cat <<JSON
{"endpoint": "$RGW", "admin": {"access_key_id": "TESTERAK", "access_key_secret": "TESTERSK"},
 "buckets": ["media-input"], "topic": "mediagate-demo", "notify": ["media-input"],
 "push_endpoint": "$BASE/v1/notifications/s3-events?token=$S3_TOKEN"}
JSON
)" >/dev/null
echo "bucket media-input notifies $BASE/v1/notifications/s3-events (token in the URL)"

step "4. Minting an app-user token for alice (HS256, as the app's identity provider would)"
TOKEN=$(JWT_SECRET="$JWT_SECRET" python3 - <<'PY'
import base64, hashlib, hmac, json, os, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": "alice", "exp": int(time.time()) + 3600}).encode())
sig = b64(hmac.new(os.environ["JWT_SECRET"].encode(), head + b"." + body, hashlib.sha256).digest())
print((head + b"." + body + b"." + sig).decode())
PY
)
echo "token for sub=alice: ${TOKEN:0:16}..."

step "5. POST /v1/uploads for a 5-second 640x360 clip made with ffmpeg: scoped temporary credentials from RGW's STS"
CLIP="$WORK/holiday.mp4"
ffmpeg -nostdin -v error -f lavfi -i testsrc2=duration=5:size=640x360:rate=25 \
  -f lavfi -i sine=frequency=440:duration=5 -c:v libx264 -pix_fmt yuv420p -c:a aac -shortest "$CLIP"
SIZE=$(stat -c %s "$CLIP")
UPLOAD=$(curl -sf -X POST "$BASE/v1/uploads" -H "Authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' \
  -d '{"file_name":"holiday.mp4","size":'"$SIZE"',"content_type":"video/mp4","media":{"title":"Holiday","tags":["beach","2026"]}}')
echo "$UPLOAD" | python3 -c '
import json, sys
u = json.load(sys.stdin)
c = u["credentials"]
mask = lambda s: s[:4] + "…(" + str(len(s)) + " chars)"
print(json.dumps({**u, "credentials": {**c, "access_key_secret": mask(c["access_key_secret"]),
                  "security_token": mask(c["security_token"])}}, indent=2))'
UPLOAD_ID=$(echo "$UPLOAD" | python3 -c 'import json,sys;print(json.load(sys.stdin)["upload_id"])')
KEY=$(echo "$UPLOAD" | python3 -c 'import json,sys;print(json.load(sys.stdin)["object_key"])')

step "6. Uploading the clip ($SIZE bytes) with boto3 and those credentials"
ARGS=$(echo "$UPLOAD" | CLIP="$CLIP" python3 -c '
import json, os, sys
u = json.load(sys.stdin)
print(json.dumps({"endpoint": u["endpoint"], "region": u["region"], "creds": u["credentials"],
                  "bucket": u["bucket"], "key": u["object_key"], "file": os.environ["CLIP"]}))')
# As an app would, follow the upload from now on (GET /v1/uploads/{id} until it is final).
cat > "$WORK/follow.py" <<'PY'
import json, os, sys, time, urllib.request
request = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + os.environ["TOKEN"]})
start, last = time.time(), None
while True:
    with urllib.request.urlopen(request, timeout=10) as r:
        upload = json.load(r)
    now = (upload["state"], ",".join(t["processing"] for t in upload["triggers"]) or "-")
    if now != last:
        print(f"{time.time() - start:5.1f} s  upload {now[0]:<10}  trigger processing: {now[1]}")
        last = now
    if upload["state"] not in ("issued", "uploaded", "processing") or time.time() - start > 120:
        break
    time.sleep(0.1)
with open(sys.argv[2], "w") as f:
    json.dump(upload, f)
sys.exit(upload["state"] != "ready")
PY
TOKEN="$TOKEN" python3 "$WORK/follow.py" "$BASE/v1/uploads/$UPLOAD_ID" "$WORK/upload.json" \
  >"$WORK/states.log" 2>&1 &
FOLLOW=$!
PIDS+=($FOLLOW)
echo "PUT $KEY -> $("$PY" "$S3CLIENT" put "$ARGS")"
OUTSIDE=$(echo "$ARGS" | python3 -c 'import json,sys;a=json.load(sys.stdin);a["key"]=a["key"].replace("uploads/alice/","uploads/bob/");print(json.dumps(a))')
REFUSED=$("$PY" "$S3CLIENT" put "$OUTSIDE")
echo "PUT into bob's prefix with alice's credentials -> $REFUSED"
echo "$REFUSED" | grep -q '"code": "AccessDenied"' || { echo "RGW did not refuse the write outside alice's prefix" >&2; exit 1; }

step "7. The event RGW sent, and the workflow it matched"
for _ in $(seq 1 100); do grep -q "object event recorded" "$WORK/mediagate.log" && break; sleep 0.1; done
grep "object event recorded" "$WORK/mediagate.log" | head -1 | sed 's/\x1b\[[0-9;]*m//g'
curl -sf "$BASE/v1/admin/match?bucket=media-input&key=$(python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1]))' "$KEY")" \
  -H "Authorization: Bearer $ADMIN_TOKEN" | python3 -m json.tool

step "8. The upload, followed to its outcome (GET /v1/uploads/$UPLOAD_ID)"
# The processor reports `running`, then its outputs, which mediagate finds in the store
# before the upload is `ready`.
if ! wait "$FOLLOW"; then
  cat "$WORK/states.log"
  sed 's/^/  /' "$WORK/processor.log"
  echo "the upload did not become ready" >&2
  exit 1
fi
cat "$WORK/states.log"

step "9. What the processor did (its log), and the outputs the app gets"
sed 's/^/  /' "$WORK/processor.log"
python3 - "$WORK/upload.json" <<'PY'
import json, sys
for o in json.load(open(sys.argv[1]))["outputs"]:
    shape = f'{o["width"]}x{o["height"]}' + (f', {o["duration_ms"] / 1000:.1f} s' if o.get("duration_ms") else "")
    print(f'{o["name"]} ({o["kind"]}, {o["format"]}, {shape}, {o["size"]} bytes), until {o["url_expires_at"]}:')
    print(f'  {o["url"]}')
PY
RENDITION=$(python3 -c 'import json,sys;print(next(o["url"] for o in json.load(open(sys.argv[1]))["outputs"] if o["kind"]=="video"))' "$WORK/upload.json")
PROBE=$(ffprobe -v error -select_streams v:0 -show_entries stream=codec_name,width,height -of csv=p=0 "$RENDITION")
echo "ffprobe on the rendition's signed URL: video stream $PROBE (codec,width,height)"
case "$PROBE" in
  h264,*,240) ;;
  *) echo "the rendition is not a 240p H.264 video" >&2; exit 1 ;;
esac

step "10. What the app's backend was told ([events], Standard Webhooks signed, bucket and key)"
for _ in $(seq 1 50); do grep -q '"upload.ready"' "$WORK/events.jsonl" 2>/dev/null && break; sleep 0.1; done
python3 - "$WORK/events.jsonl" <<'PY'
import json, sys
told = [json.loads(line) for line in open(sys.argv[1])]
for t in told:
    e = t["event"]
    outputs = ", ".join(f'{o["bucket"]}/{o["key"]}' for o in e["data"]["outputs"]) or "-"
    print(f'{e["type"]:<18} id {t["webhook-id"]}  signature verified: {t["verified"]}  outputs: {outputs}')
ready = [t for t in told if t["event"]["type"] == "upload.ready"]
if len(ready) != 1 or not all(t["verified"] for t in told):
    sys.exit("the backend was not told exactly one verified upload.ready")
PY

step "11. The browser page: uploads straight to RGW, every request signed by mediagate"
target/debug/mediagate bucket setup --config "$WORK/mediagate.toml" 2>/dev/null
scripts/web.sh 2>/dev/null
python3 -m http.server "$PAGE_PORT" --bind 127.0.0.1 --directory clients/web/example \
  >"$WORK/page.log" 2>&1 &
PIDS+=($!)
PAGE="http://127.0.0.1:$PAGE_PORT/?api=$(python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1],safe=""))' "$BASE")&token=$TOKEN"
for _ in $(seq 1 50); do curl -sf -o /dev/null "$PAGE" && break; sleep 0.1; done
curl -sf "$PAGE" | grep -q 'id="uploader"' || { echo "the page is not served" >&2; exit 1; }
echo "page for alice (token valid for an hour): $PAGE"
step "Done: credentials vended, upload scoped by RGW, event matched, processed, reported, ready, and the backend told"
if [ "${MEDIAGATE_DEMO_KEEP:-0}" = 1 ]; then
  echo "Keeping everything running for the page; Ctrl-C stops it."
  wait
fi
