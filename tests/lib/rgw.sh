# Sourced after functions.sh: a throwaway single-host Ceph cluster with a
# RADOS Gateway (Debian's radosgw: a real S3 server with real SigV4), all
# under $T/ceph, on 127.0.0.1: one monitor, one OSD on memstore (objects
# in RAM, nothing on disk), radosgw (beast), cephx between them, and one
# S3 user.  Stopped by PID at exit.
#
# rgw_start [--tls]
#   sets RGW_URL (http[s]://127.0.0.1:PORT), RGW_KEY, RGW_SECRET, RGW_PID,
#   RGW_START_MS (how long the cluster took to come up), and with --tls
#   RGW_FP (certificate SHA-256, aa:bb:..) and RGW_CERT.
# rgw_bucket NAME        create a bucket
# rgw_stop / rgw_restart radosgw only (the cluster keeps the objects)
# rgw_rss_kib            resident memory of mon + osd + radosgw, KiB

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
	requires radosgw
	requires ceph-mon
	requires ceph-osd
	requires ceph-authtool
fi

rgw_start() {
	local tls=0 d mp t0 fsid ok=0
	[ "${1:-}" = --tls ] && tls=1
	d=$T/ceph
	RGW_DIR=$d
	mkdir -p "$d"/{mon,osd/osd.0,run,log,rgw}
	mp=$(free_port)
	RGW_PORT=$(free_port)
	fsid=$(cat /proc/sys/kernel/random/uuid)
	local front="beast endpoint=127.0.0.1:$RGW_PORT"
	RGW_URL=http://127.0.0.1:$RGW_PORT
	if [ $tls = 1 ]; then
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
			-nodes -days 2 -subj /CN=rgw.test \
			-addext "subjectAltName=DNS:rgw.test" \
			-keyout "$d/key.pem" -out "$d/cert.pem" 2>/dev/null
		cat "$d/cert.pem" "$d/key.pem" >"$d/both.pem"
		RGW_CERT=$d/cert.pem
		RGW_FP=$(openssl x509 -in "$RGW_CERT" -noout -fingerprint -sha256 |
			cut -d= -f2 | tr 'A-F' 'a-f')
		front="beast ssl_endpoint=127.0.0.1:$RGW_PORT ssl_certificate=$d/both.pem"
		RGW_URL=https://127.0.0.1:$RGW_PORT
	fi
	cat >"$d/ceph.conf" <<CONF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mp
mon initial members = a
keyring = $d/keyring
run dir = $d/run
log file = $d/log/\$name.log
admin socket = $d/run/\$name.asok
osd data = $d/osd/\$name
mon data = $d/mon/\$name
ms bind ipv6 = false
public network = 127.0.0.0/8
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
osd objectstore = memstore
memstore device bytes = ${RGW_MEMSTORE_BYTES:-3221225472}
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
mon max pg per osd = 1000
[client.rgw.a]
rgw frontends = $front
rgw data = $d/rgw
CONF
	t0=$(date +%s%N)
	ceph-authtool --create-keyring "$d/keyring" --gen-key -n mon. \
		--cap mon 'allow *' >/dev/null
	ceph-authtool "$d/keyring" --gen-key -n client.admin --cap mon 'allow *' \
		--cap osd 'allow *' --cap mgr 'allow *' >/dev/null
	ceph-authtool "$d/keyring" --gen-key -n client.rgw.a --cap mon 'allow rw' \
		--cap osd 'allow rwx' >/dev/null
	ceph-authtool "$d/keyring" --gen-key -n osd.0 \
		--cap mon 'allow profile osd' --cap osd 'allow *' >/dev/null
	monmaptool --create --addv a "[v2:127.0.0.1:$mp]" --fsid "$fsid" \
		"$d/monmap" >/dev/null
	ceph-mon --mkfs -i a --monmap "$d/monmap" -c "$d/ceph.conf" \
		--keyring "$d/keyring" >>"$d/log/setup" 2>&1 ||
		fail "ceph-mon --mkfs: $(tail -3 "$d/log/setup")"
	ceph-mon -i a -c "$d/ceph.conf" >>"$d/log/setup" 2>&1
	# A throwaway cluster: SIGKILL, no graceful shutdown to wait for.
	cleanup_fn "pkill -9 -f '(ceph-mon|ceph-osd|radosgw).* $d/'"
	for _ in $(seq 1 100); do
		timeout 5 ceph -c "$d/ceph.conf" -s >/dev/null 2>&1 && { ok=1; break; }
		sleep 0.1
	done
	[ $ok = 1 ] || fail "ceph-mon did not come up: $(tail -5 "$d/log/mon.a.log")"
	ceph -c "$d/ceph.conf" osd create >/dev/null
	ceph-osd -c "$d/ceph.conf" -i 0 --mkfs >>"$d/log/setup" 2>&1 ||
		fail "ceph-osd --mkfs: $(tail -3 "$d/log/setup")"
	ceph-osd -c "$d/ceph.conf" -i 0 >>"$d/log/setup" 2>&1
	ok=0
	for _ in $(seq 1 200); do
		ceph -c "$d/ceph.conf" osd stat 2>/dev/null | grep -q "1 up" &&
			{ ok=1; break; }
		sleep 0.1
	done
	[ $ok = 1 ] || fail "ceph-osd did not come up: $(tail -5 "$d/log/osd.0.log")"
	_rgw_launch
	RGW_KEY=AK$RANDOM$RANDOM
	RGW_SECRET=SK$(python3 -c 'import uuid; print(uuid.uuid4().hex)')
	radosgw-admin -c "$d/ceph.conf" user create --uid=livemount \
		--display-name=livemount --access-key="$RGW_KEY" \
		--secret="$RGW_SECRET" >>"$d/log/setup" 2>&1 ||
		fail "radosgw-admin user create: $(tail -3 "$d/log/setup")"
	RGW_START_MS=$((($(date +%s%N) - t0) / 1000000))
}

_rgw_launch() {
	local d=$RGW_DIR ok=0
	radosgw -c "$d/ceph.conf" -n client.rgw.a >>"$d/log/setup" 2>&1
	RGW_PID=$(pgrep -f "radosgw -c $d/" | head -1)
	for _ in $(seq 1 300); do
		curl -sk -o /dev/null "$RGW_URL/" && { ok=1; break; }
		sleep 0.1
	done
	[ $ok = 1 ] || fail "radosgw did not come up: $(tail -5 "$d/log/client.rgw.a.log")"
	RGW_PID=$(pgrep -f "radosgw -c $d/" | head -1)
}

rgw_bucket() {
	curl -sk -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" \
		--user "$RGW_KEY:$RGW_SECRET" \
		-H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
		-o /dev/null -w '%{http_code}' "$RGW_URL/$1" | grep -q 200 ||
		fail "cannot create bucket $1"
}

rgw_stop() {
	local pid
	pid=$(pgrep -f "radosgw -c $RGW_DIR/" | head -1)
	[ -n "$pid" ] && kill "$pid"
	for _ in $(seq 1 100); do
		pgrep -f "radosgw -c $RGW_DIR/" >/dev/null || return 0
		sleep 0.1
	done
	pkill -9 -f "radosgw -c $RGW_DIR/" || true
}

rgw_restart() {
	_rgw_launch
}

rgw_rss_kib() {
	ps -o rss= -p "$(pgrep -d, -f "(ceph-mon|ceph-osd|radosgw).*$RGW_DIR/")" |
		awk '{s += $1} END {print s}'
}

# Run as a program (the benchmark): start a cluster in DIR and print its
# variables, or stop it.
#   tests/lib/rgw.sh start DIR   ->  RGW_URL=... RGW_KEY=... RGW_SECRET=...
#   tests/lib/rgw.sh stop DIR
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -eu
	fail() { echo "rgw.sh: $*" >&2; exit 1; }
	cleanup_fn() { :; }
	free_port() {
		python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
	}
	T=$2
	case $1 in
	start)
		mkdir -p "$T"
		rgw_start
		echo "RGW_URL=$RGW_URL RGW_KEY=$RGW_KEY RGW_SECRET=$RGW_SECRET RGW_START_MS=$RGW_START_MS"
		;;
	stop)
		pkill -9 -f "(ceph-mon|ceph-osd|radosgw).* $T/ceph/" || true
		;;
	esac
fi
