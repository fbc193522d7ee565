#!/usr/bin/env bash
# The whole flow on this machine, with nothing but this repository: installs and starts a
# single-node Ceph RGW (S3 + STS), starts mediagate on SQLite configured for it, mints an app
# token, requests an upload, uploads a sample clip with boto3, and shows each step: the
# credentials (secret masked), the event RGW sent, the workflow matched, the signed webhook
# delivery and the upload's final state. It also builds the web client's example page, serves
# it, prepares the bucket's CORS with `mediagate bucket setup`, and prints the page's URL.
# Everything it started is stopped on exit; with MEDIAGATE_DEMO_KEEP=1 it keeps running (the
# page usable in a browser) until Ctrl-C.
#   MEDIAGATE_DEMO_PORT (18080), MEDIAGATE_DEMO_HOOK_PORT (18090) and MEDIAGATE_DEMO_PAGE_PORT
#   (18070) choose the local ports.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${MEDIAGATE_DEMO_PORT:-18080}
HOOK_PORT=${MEDIAGATE_DEMO_HOOK_PORT:-18090}
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

step "1. Building mediagate and preparing the S3 client (boto3)"
scripts/build-deps.sh
cargo build --locked --quiet
PY=$(scripts/python.sh)
S3CLIENT=tests/e2e/s3client.py

step "2. Starting Ceph RGW (S3 + STS with enforced session policies)"
RGW=$(scripts/rgw.sh start)
echo "RGW at $RGW; role arn:aws:iam:::role/uploader"

step "3. Starting mediagate on SQLite, configured for RGW"
JWT_SECRET=$(random); ADMIN_TOKEN=$(random); S3_TOKEN=$(random)
HOOK_SECRET="whsec_$(python3 -c 'import base64,secrets;print(base64.b64encode(secrets.token_bytes(24)).decode())')"
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
[[workflows]]
name = "demo-transcode"
state = "Active"
bucket = "media-input"
prefix = "uploads/"
sink = "webhook"
webhook_url = "http://127.0.0.1:$HOOK_PORT/hooks"
webhook_secret = "$HOOK_SECRET"
CONF
target/debug/mediagate check-config --config "$WORK/mediagate.toml"
"$PY" tests/e2e/webhook_receiver.py "$HOOK_PORT" "$HOOK_SECRET" "$WORK/deliveries.jsonl" &
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

step "5. POST /v1/uploads: scoped temporary credentials from RGW's STS"
UPLOAD=$(curl -sf -X POST "$BASE/v1/uploads" -H "Authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' \
  -d '{"file_name":"holiday.mp4","size":262144,"content_type":"video/mp4","media":{"title":"Holiday","tags":["beach","2026"]}}')
echo "$UPLOAD" | python3 -c '
import json, sys
u = json.load(sys.stdin)
c = u["credentials"]
mask = lambda s: s[:4] + "…(" + str(len(s)) + " chars)"
print(json.dumps({**u, "credentials": {**c, "access_key_secret": mask(c["access_key_secret"]),
                  "security_token": mask(c["security_token"])}}, indent=2))'
UPLOAD_ID=$(echo "$UPLOAD" | python3 -c 'import json,sys;print(json.load(sys.stdin)["upload_id"])')
KEY=$(echo "$UPLOAD" | python3 -c 'import json,sys;print(json.load(sys.stdin)["object_key"])')

step "6. Uploading a sample clip with boto3 and those credentials"
ARGS=$(echo "$UPLOAD" | python3 -c '
import json, sys
u = json.load(sys.stdin)
print(json.dumps({"endpoint": u["endpoint"], "region": u["region"], "creds": u["credentials"],
                  "bucket": u["bucket"], "key": u["object_key"], "size": 262144}))')
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

step "8. The webhook delivery (signature checked by the receiver)"
for _ in $(seq 1 100); do [ -s "$WORK/deliveries.jsonl" ] && break; sleep 0.1; done
python3 -m json.tool < <(head -1 "$WORK/deliveries.jsonl")

step "9. The upload's final state (GET /v1/uploads/$UPLOAD_ID)"
for _ in $(seq 1 100); do
  STATE=$(curl -sf "$BASE/v1/uploads/$UPLOAD_ID" -H "Authorization: Bearer $TOKEN")
  echo "$STATE" | grep -q '"state":"triggered"' && break
  sleep 0.1
done
echo "$STATE" | python3 -m json.tool
echo "$STATE" | grep -q '"state":"triggered"' || { echo "the upload did not reach triggered" >&2; exit 1; }
grep -q '"verified": true' "$WORK/deliveries.jsonl" || { echo "no verified delivery" >&2; exit 1; }

step "10. The browser page: uploads straight to RGW, every request signed by mediagate"
target/debug/mediagate bucket setup --config "$WORK/mediagate.toml" 2>/dev/null
scripts/web.sh 2>/dev/null
python3 -m http.server "$PAGE_PORT" --bind 127.0.0.1 --directory clients/web/example \
  >"$WORK/page.log" 2>&1 &
PIDS+=($!)
PAGE="http://127.0.0.1:$PAGE_PORT/?api=$(python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1],safe=""))' "$BASE")&token=$TOKEN"
for _ in $(seq 1 50); do curl -sf -o /dev/null "$PAGE" && break; sleep 0.1; done
curl -sf "$PAGE" | grep -q 'id="uploader"' || { echo "the page is not served" >&2; exit 1; }
echo "page for alice (token valid for an hour): $PAGE"
step "Done: credentials vended, upload scoped by RGW, event matched, webhook delivered and verified"
if [ "${MEDIAGATE_DEMO_KEEP:-0}" = 1 ]; then
  echo "Keeping everything running for the page; Ctrl-C stops it."
  wait
fi
