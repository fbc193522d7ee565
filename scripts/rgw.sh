#!/usr/bin/env bash
# A throwaway single-node Ceph cluster with a RADOS Gateway (S3 + STS) on loopback.
#   scripts/rgw.sh start   installs Ceph from Debian's packages if missing, starts a fresh
#                          cluster (in-memory OSD) and prints the S3 endpoint URL
#   scripts/rgw.sh stop    stops it by PID and deletes its data
#   scripts/rgw.sh pause   stops the gateway alone (the cluster and its data stay), for
#                          outage tests; `resume` starts it again
# RGW_PORT (default 7480) and MEDIAGATE_RGW_DIR (default /tmp/mediagate-rgw) override.
# User TESTERAK/TESTERSK may assume arn:aws:iam:::role/uploader. One cluster at a time: the
# monitor's port 3300 is fixed.
set -euo pipefail
PORT=${RGW_PORT:-7480}
D=${MEDIAGATE_RGW_DIR:-/tmp/mediagate-rgw}

stop() {
  for pidfile in "$D"/run/*.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  for name in radosgw ceph-mgr ceph-osd ceph-mon; do
    pkill -f "$name -c $D/ceph.conf" 2>/dev/null || true
  done
  sleep 1
  rm -rf "$D"
}

case "${1:-}" in
  start)
    if ! command -v radosgw >/dev/null || ! command -v ceph-mon >/dev/null; then
      echo "installing Ceph from Debian's packages..." >&2
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        radosgw ceph-mon ceph-osd ceph-mgr ceph-common >&2
    fi
    stop
    mkdir -p "$D"/{run,log,mon.a,osd.0,rgw}
    cd "$D"
    FSID=$(python3 -c 'import uuid;print(uuid.uuid4())')
    cat > ceph.conf <<CONF
[global]
fsid = $FSID
mon_host = v2:127.0.0.1:3300/0
public_addr = 127.0.0.1
keyring = $D/keyring
run_dir = $D/run
admin_socket = $D/run/\$name.asok
pid_file = $D/run/\$name.pid
log_file = $D/log/\$name.log
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_pool_default_pg_num = 8
mon_max_pg_per_osd = 1000
osd_crush_chooseleaf_type = 0
[mon.a]
mon_data = $D/mon.a
[osd.0]
osd_data = $D/osd.0
osd_objectstore = memstore
memstore_device_bytes = 2147483648
[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:$PORT
rgw_data = $D/rgw
rgw_sts_key = 0123456789abcdef
rgw_s3_auth_use_sts = true
CONF
    K="ceph-authtool keyring"
    ceph-authtool --create-keyring keyring --gen-key -n mon. --cap mon 'allow *' >/dev/null
    $K --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
    $K --gen-key -n client.rgw.a --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw' >/dev/null
    $K --gen-key -n osd.0 --cap mon 'allow profile osd' --cap osd 'allow *' --cap mgr 'allow profile osd' >/dev/null
    $K --gen-key -n mgr.x --cap mon 'allow profile mgr' --cap osd 'allow *' >/dev/null
    monmaptool --create --fsid "$FSID" --addv a '[v2:127.0.0.1:3300]' monmap >/dev/null
    C="-c $D/ceph.conf"
    ceph-mon $C --mkfs -i a --monmap monmap --keyring keyring
    ceph-mon $C -i a
    ceph $C osd create >/dev/null
    ceph-osd $C -i 0 --mkfs 2>/dev/null
    ceph-osd $C -i 0 2>/dev/null
    ceph $C osd crush add osd.0 1.0 host=localhost root=default >/dev/null 2>&1
    ceph-mgr $C -i x
    radosgw $C -n client.rgw.a
    for _ in $(seq 1 120); do curl -s -m 1 -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.5; done
    curl -s -m 2 -o /dev/null "http://127.0.0.1:$PORT/" || { echo "radosgw did not come up; see $D/log" >&2; exit 1; }
    A="radosgw-admin $C -n client.rgw.a"
    $A user create --uid=tester --display-name=Tester --access-key=TESTERAK --secret=TESTERSK >/dev/null 2>&1
    $A caps add --uid=tester --caps="roles=*;user-policy=*" >/dev/null 2>&1
    $A role create --role-name=uploader --path=/ --assume-role-policy-doc='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam:::user/tester"]},"Action":["sts:AssumeRole"]}]}' >/dev/null 2>&1
    $A role-policy put --role-name=uploader --policy-name=s3all --policy-doc='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":"arn:aws:s3:::*"}]}' >/dev/null 2>&1
    echo "http://127.0.0.1:$PORT"
    ;;
  stop)
    stop
    ;;
  pause)
    pid=$(cat "$D/run/client.rgw.a.pid")
    kill "$pid"
    # Gone, not just deaf: a gateway still shutting down holds the pid file's lock, and
    # `resume` would fail to take it.
    for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    ;;
  resume)
    radosgw -c "$D/ceph.conf" -n client.rgw.a
    for _ in $(seq 1 120); do curl -s -m 1 -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.5; done
    curl -s -m 2 -o /dev/null "http://127.0.0.1:$PORT/" || { echo "radosgw did not come back; see $D/log" >&2; exit 1; }
    ;;
  *)
    echo "usage: $0 start|stop|pause|resume" >&2
    exit 2
    ;;
esac
