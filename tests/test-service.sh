#!/bin/bash
# What an administrator installs around the program: make install puts
# the unit, the completion and the example in place; the unit passes
# systemd-analyze verify; run as the unit runs it (EnvironmentFile,
# mount -f, $NOTIFY_SOCKET, stderr the journal's stream) the mount says
# READY=1 only once it serves, its log lines carry journal priorities,
# and SIGTERM (systemctl stop) says STOPPING=1 and unmounts.  Bash
# completes commands, options and partial snapshot and archive names;
# --repository stands for the REPO argument.
source "$(dirname "$0")/lib/functions.sh"
requires_fuse
requires systemd-analyze
requires python3
requires setsid
src=$TESTS_DIR/..
make_image "$T/src.img" 8 3
printf 'memory: 512\n' >"$T/q.conf"
$PROG pack --lazy-chunk-dirs -q --id 5 --time 1700000000 --config "$T/q.conf" \
	"$T/src.img:drive-scsi0" "$T/ds"
$PROG pack --lazy-chunk-dirs -q --id 51 --time 1700000000 "$T/src.img:drive-virtio1" "$T/ds"

# make install: where Debian looks.
make -s -C "$src" install DESTDIR="$T/root" prefix=/usr >"$T/install.log" 2>&1 ||
	{ cat "$T/install.log"; fail "make install"; }
unit=$T/root/lib/systemd/system/pbs-livemount@.service
comp=$T/root/usr/share/bash-completion/completions/pbs-livemount
for f in "$unit" "$comp" "$T/root/usr/bin/pbs-livemount" \
	"$T/root/usr/share/doc/pbs-livemount/example.conf"; do
	[ -f "$f" ] || fail "make install did not install $f"
done
grep -q '^ExecStart=/usr/bin/pbs-livemount mount -f ' "$unit" || fail "ExecStart: $(grep ExecStart "$unit")"
grep -qx 'Type=notify' "$unit" || fail "not Type=notify"
# Verified as an instance, its binary the one under test.
sed "s|/usr/bin/pbs-livemount|$PROG|" "$unit" >"$T/pbs-livemount@demo.service"
systemd-analyze verify --man=no "$T/pbs-livemount@demo.service" >"$T/verify" 2>&1 ||
	{ cat "$T/verify"; fail "systemd-analyze verify"; }
[ -s "$T/verify" ] && fail "systemd-analyze verify warns: $(cat "$T/verify")"

# As systemd runs it: the conf's variables, ExecStart's words.
cat >"$T/demo.conf" <<CONF
PBS_REPOSITORY=$T/ds
SNAPSHOT=vm/5
MOUNTPOINT=$T/mnt
OPTIONS=--read-only --no-trace
CONF
mkdir -p "$T/mnt"
python3 - "$T/notify" "$T/mnt" >"$T/notify.log" 2>&1 <<'PY' &
import os, socket, sys, time
path, mnt = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(120)
while True:
    msg = s.recv(4096).decode()
    for line in msg.split("\n"):
        if line == "READY=1":
            print("READY serving" if "drive-scsi0.img" in os.listdir(mnt)
                  else "READY early", flush=True)
        elif line:
            print(line, flush=True)
    if "STOPPING=1" in msg:
        break
PY
npid=$!
cleanup_fn "kill $npid"
for _ in $(seq 50); do [ -S "$T/notify" ] && break; sleep 0.1; done
: >"$T/journal"
(
	# KEY=VALUE lines, as systemd's EnvironmentFile reads them.
	while IFS='=' read -r k v; do export "$k=$v"; done <"$T/demo.conf"
	export NOTIFY_SOCKET=$T/notify JOURNAL_STREAM=$(stat -c %d:%i "$T/journal")
	exec $PROG mount -f $OPTIONS ${SNAPSHOT} ${MOUNTPOINT}
) 2>>"$T/journal" &
mpid=$!
cleanup_fn "kill -9 $mpid; fusermount3 -uz '$T/mnt'"
for _ in $(seq 100); do grep -q READY "$T/notify.log" && break; sleep 0.1; done
grep -qx "READY serving" "$T/notify.log" || fail "READY=1: $(cat "$T/notify.log")"
grep -q "^STATUS=serving $T/mnt" "$T/notify.log" || fail "no STATUS"
cmp "$T/mnt/drive-scsi0.img" "$T/src.img" || fail "the unit's mount differs"
kill -TERM $mpid
wait $mpid || fail "the mount's exit after SIGTERM"
wait $npid 2>/dev/null
grep -qx "STOPPING=1" "$T/notify.log" || fail "no STOPPING=1: $(cat "$T/notify.log")"
mountpoint -q "$T/mnt" && fail "still mounted after stop"
grep -q '^<6>pbs-livemount: mount: vm/5/2023-11-14T22:13:20Z mounted' "$T/journal" ||
	fail "no journal priority: $(head -3 "$T/journal")"
note "Type=notify: READY=1 once serving, STOPPING=1 at stop; priorities for the journal"

# --repository: the REPO argument as an option.
$PROG restore -q --repository "$T/ds" vm/5 drive-scsi0 "$T/r.img" || fail "restore --repository"
cmp "$T/r.img" "$T/src.img" || fail "restore --repository differs"
$PROG list --repository "$T/ds" vm/5 | grep -q '^vm/5/' || fail "list --repository TYPE/ID"
$PROG pack -q --lazy-chunk-dirs --repository "$T/ds2" --id 9 "$T/src.img:drive-scsi0" ||
	fail "pack --repository"
[ -d "$T/ds2/vm/9" ] || fail "pack --repository wrote elsewhere"
expect_fail $PROG restore --repository "$T/ds" "$T/ds" vm/5 drive-scsi0 "$T/r2.img"
grep -q "repository given twice" "$T/err" || fail "both given: $(cat "$T/err")"

# Completion, as bash calls it.
comp() {
	bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		_pbs_livemount; printf "%s\n" "${COMPREPLY[@]}"' _ "$comp" "$@"
}
export PATH=$(dirname "$PROG"):$PATH
[ "$(comp pbs-livemount unm)" = unmap ] || fail "completion of a command"
comp pbs-livemount restore --in | grep -qx -- --in-place || fail "completion of an option"
[ "$(comp pbs-livemount mount "$T/ds" vm/5 | sort | tr '\n' ' ')" = \
	"vm/5 vm/5/2023-11-14T22:13:20Z vm/51 vm/51/2023-11-14T22:13:20Z " ] ||
	fail "completion of a partial snapshot name: $(comp pbs-livemount mount "$T/ds" vm/5)"
[ "$(comp pbs-livemount restore --overwrite "$T/ds" vm/5/2023-11-14T22:13:20Z "" | sort | tr '\n' ' ')" = \
	"drive-scsi0 qemu-server.conf " ] || fail "completion of an archive"
[ "$(PBS_REPOSITORY=$T/ds comp pbs-livemount map vm/51 d)" = drive-virtio1 ] ||
	fail "completion with PBS_REPOSITORY"
[ "$(comp pbs-livemount list --repository "$T/ds" vm/51/)" = vm/51/2023-11-14T22:13:20Z ] ||
	fail "completion with --repository"
echo ok
