# Sourced after functions.sh: a private PBS double (tests/lib/pbs-server.js,
# Node) serving datastore trees over HTTPS on 127.0.0.1, with PBS's API
# and reader protocol.  Everything lives under $T/pbs; stopped by PID.
#
# pbs_start DIR [SERVER-OPTIONS...]   (PBS_EXTRA_AUTH: more auth lines)
#   serves DIR as datastore "store1"; sets PBS_HOST (127.0.0.1:PORT),
#   PBS_PORT, PBS_FP (certificate SHA-256, aa:bb:..), PBS_CERT, PBS_PID,
#   PBS_LOG (one line per request), PBS_TOKEN_ID / PBS_TOKEN_SECRET (an
#   API token), PBS_USER / PBS_USER_PASSWORD (a password user).
# pbs_fault "MODE [N]"   off | delay MS | drop-after N | goaway-after N |
#                        stall-after N
# pbs_count PATTERN      requests in the log matching PATTERN
# pbs_stop, pbs_restart  (same port, certificate and options)

requires node

pbs_start() {
	local root=$1
	shift
	PBS_DIR=$T/pbs
	mkdir -p "$PBS_DIR"
	PBS_PORT=$(free_port)
	PBS_HOST=127.0.0.1:$PBS_PORT
	requires openssl
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
		-nodes -days 2 -subj /CN=pbs.test \
		-addext "subjectAltName=DNS:pbs.test" \
		-keyout "$PBS_DIR/key.pem" -out "$PBS_DIR/cert.pem" 2>/dev/null
	PBS_CERT=$PBS_DIR/cert.pem
	PBS_FP=$(openssl x509 -in "$PBS_CERT" -noout -fingerprint -sha256 |
		cut -d= -f2 | tr 'A-F' 'a-f')
	PBS_TOKEN_ID='root@pam!livemount'
	PBS_TOKEN_SECRET=$(python3 -c 'import uuid; print(uuid.uuid4())')
	PBS_USER='alice@pbs'
	PBS_USER_PASSWORD="pw-$RANDOM$RANDOM"
	PBS_LOG=$PBS_DIR/requests.log
	echo off >"$PBS_DIR/faults"
	printf 'token %s %s\nuser %s %s\n%s' "$PBS_TOKEN_ID" "$PBS_TOKEN_SECRET" \
		"$PBS_USER" "$PBS_USER_PASSWORD" "${PBS_EXTRA_AUTH:-}" \
		>"$PBS_DIR/auth"
	_pbs_args=(--port "$PBS_PORT" --cert "$PBS_CERT" --key "$PBS_DIR/key.pem"
		--store "store1=$root" --auth "$PBS_DIR/auth" --log "$PBS_LOG"
		--faults "$PBS_DIR/faults" "$@")
	_pbs_launch
}

_pbs_launch() {
	node "$TESTS_DIR/lib/pbs-server.js" "${_pbs_args[@]}" \
		>>"$PBS_DIR/stderr" 2>&1 &
	PBS_PID=$!
	cleanup_fn "kill $PBS_PID; wait $PBS_PID"
	for _ in $(seq 1 100); do
		curl -sk -o /dev/null "https://$PBS_HOST/api2/json/version" &&
			return 0
		kill -0 $PBS_PID 2>/dev/null ||
			{ cat "$PBS_DIR/stderr"; fail "PBS double did not start"; }
		sleep 0.1
	done
	fail "PBS double not answering on $PBS_HOST"
}

pbs_fault() {
	echo "$*" >"$PBS_DIR/faults"
}

pbs_count() {
	grep -c -- "$1" "$PBS_LOG" || true
}

pbs_stop() {
	kill $PBS_PID 2>/dev/null || true
	wait $PBS_PID 2>/dev/null || true
}

pbs_restart() {
	_pbs_launch
}
