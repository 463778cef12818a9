#!/bin/bash
# Cut-over failures are harmless: a missing socket, a QEMU that does not
# use the mount, QEMU refusing a step (injected by a QMP proxy) each give
# one line and a non-zero exit, and leave the VM on the mount, the mount
# serving and no job or node of ours behind.  A kill -9 of the daemon at
# any step leaves the VM on the mount or on the target, never neither;
# a new mount resumes and the cut-over then succeeds.
source "$(dirname "$0")/lib/functions.sh"
source "$TESTS_DIR/lib/qemu.sh"
requires_fuse
make_image "$T/src.img" 24 9
$PROG pack --lazy-chunk-dirs -q --id 3 --time 1700000000 "$T/src.img:disk" "$T/ds"
mnt=$T/mnt
img=$mnt/disk.img
tgt=$T/tgt.raw
mount_complete() {
	lm_mount "$mnt" --target "$tgt" --allow-other "$T/ds" vm/3
	lm_wait_complete "$mnt" 60
}
cut() { $PROG cutover -q "$@" "$mnt"; }
on_mount() {	# the VM's disk is still the mount's, which still serves
	[ "$(qmp_disk "$T/vm.mon" "$mnt")" = mount ] ||
		fail "$1: the disk is on $(qmp_disk "$T/vm.mon" "$mnt")"
	[ "$(qmp_files $QEMU_PID "$mnt" "$tgt")" = mount ] ||
		fail "$1: QEMU holds $(qmp_files $QEMU_PID "$mnt" "$tgt")"
	[ "$(lm_state "$mnt")" = complete ] || fail "$1: state $(lm_state "$mnt")"
	cmp -n 4096 "$T/src.img" "$img" || fail "$1: the mount stopped serving"
	qmp_call "$T/vm.mon" query-named-block-nodes | grep -q '"node-name": "pbslm-' &&
		fail "$1: a node of ours was left in QEMU"
	qmp_call "$T/vm.mon" query-jobs | grep -q '"id": "pbslm-' &&
		fail "$1: a job of ours was left in QEMU"
	true
}

mount_complete
qemu_idle vm "$img"

# No monitor there; a QEMU that does not use the mount.
expect_fail cut --qmp "$T/nothing.qmp"
assert_one_line_error; assert_err_contains "nothing.qmp"
on_mount "missing socket"
truncate -s 8M "$T/other.raw"
qemu_idle other "$T/other.raw"
other=$QEMU_PID
QEMU_PID=$(pgrep -f "unix:$T/vm.qmp" | head -1)
expect_fail cut --qmp "$T/other.qmp"
assert_one_line_error; assert_err_contains "has no disk of"
on_mount "wrong VM"
kill -9 $other

# QEMU refuses a step.
for step in add-fd blockdev-add blockdev-mirror block-job-complete; do
	rm -f "$T/proxy.qmp"
	python3 "$TESTS_DIR/lib/qmp.py" proxy "$T/proxy.qmp" "$T/vm.qmp" \
		"$T/proxy.log" --fail $step &
	proxy=$!
	for _ in $(seq 50); do [ -S "$T/proxy.qmp" ] && break; sleep 0.05; done
	expect_fail cut --qmp "$T/proxy.qmp"
	assert_one_line_error; assert_err_contains "injected failure of $step"
	kill $proxy; wait $proxy 2>/dev/null || true
	on_mount "$step refused"
done

# kill -9 of the daemon at each step: on the mount or on the target.
for step in blockdev-add blockdev-mirror block-job-complete after-complete; do
	rm -f "$T/proxy.log"* "$T/proxy.qmp"
	if [ $step = after-complete ]; then
		hold=(--hold query-jobs --after block-job-complete)
	else
		hold=(--hold $step)
	fi
	python3 "$TESTS_DIR/lib/qmp.py" proxy "$T/proxy.qmp" "$T/vm.qmp" \
		"$T/proxy.log" "${hold[@]}" &
	proxy=$!
	for _ in $(seq 50); do [ -S "$T/proxy.qmp" ] && break; sleep 0.05; done
	cut --qmp "$T/proxy.qmp" 2>"$T/cut.err" &
	cutpid=$!
	for _ in $(seq 200); do [ -e "$T/proxy.log.held" ] && break; sleep 0.05; done
	[ -e "$T/proxy.log.held" ] || fail "$step: the proxy never held"
	[ $step = after-complete ] && sleep 0.5	# QEMU swaps by itself
	kill -9 $LM_PID; wait $LM_PID 2>/dev/null || true
	touch "$T/proxy.log.go"
	wait $cutpid && fail "$step: the cutover command succeeded"
	kill $proxy; wait $proxy 2>/dev/null || true
	where=$(qmp_disk "$T/vm.mon" "$mnt")
	note "kill -9 at $step: the VM's disk is on the $where"
	case $where in mount | target) ;; *) fail "$step: the VM is on $where" ;; esac
	[ $step = after-complete ] && [ $where != target ] &&
		fail "a completed swap was undone"
	[ $step != after-complete ] && [ $where != mount ] &&
		fail "$step: swapped without block-job-complete"
	# A new mount resumes, complete at once; the cut-over then ends it.
	fusermount3 -u -z "$mnt"
	mount_complete
	cut --qmp "$T/vm.qmp" || fail "$step: cut-over after the new mount"
	[ "$(qmp_disk "$T/vm.mon" "$mnt")" = target ] || fail "$step: not on the target"
	[ "$(qmp_files $QEMU_PID "$mnt" "$tgt")" = target ] ||
		fail "$step: QEMU holds $(qmp_files $QEMU_PID "$mnt" "$tgt")"
	for _ in $(seq 50); do kill -0 $LM_PID 2>/dev/null || break; sleep 0.1; done
	kill -0 $LM_PID 2>/dev/null && fail "$step: the daemon did not exit"
	wait $LM_PID || fail "$step: the daemon exited $?"
	mountpoint -q "$mnt" && fail "$step: still mounted"
	cmp "$T/src.img" "$tgt" || fail "$step: the target changed"
	qmp_call "$T/vm.mon" query-jobs | grep -q '"id": "pbslm-' && fail "$step: a job left"
	# Back onto the mount for the next round.
	kill -9 $QEMU_PID; wait $QEMU_PID 2>/dev/null || true
	mount_complete
	qemu_idle vm "$img"
done
echo ok
