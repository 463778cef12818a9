# Sourced after functions.sh: a private nginx serving a datastore tree on
# 127.0.0.1, optionally with TLS (self-signed, made here) and Lua fault
# injection.  Everything lives under $T/nginx; stopped by PID at exit.
#
# nginx_start ROOT [--tls] [--lua] [--auth TOKEN]
#   sets NGX_URL (http[s]://127.0.0.1:PORT), NGX_DIR, NGX_PID; with --tls
#   NGX_CERT (PEM, usable as --ca-file) and NGX_FP (SHA-256, aa:bb:..).
# nginx_fault "MODE [ARGS]"  switch faults for requests under /.chunks/:
#   off | 503 N | drop N | stall N SECS | trunc N | flip N | delay MS
#   | hold TEXT (503 for chunks whose path contains TEXT)
#   N = how many requests of each chunk fail (0 = every one).
# nginx_count PATTERN  requests in the access log matching PATTERN.

requires nginx

nginx_start() {
	local root=$1 tls=0 lua=0 auth= port listen mods=
	shift
	while [ $# -gt 0 ]; do
		case $1 in
		--tls) tls=1 ;;
		--lua) lua=1 ;;
		--auth) auth=$2; shift ;;
		esac
		shift
	done
	NGX_DIR=$T/nginx
	mkdir -p "$NGX_DIR"
	port=$(free_port)
	listen="listen 127.0.0.1:$port;"
	NGX_URL=http://127.0.0.1:$port
	if [ $tls = 1 ]; then
		requires openssl
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
			-nodes -days 2 -subj /CN=localhost \
			-addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
			-keyout "$NGX_DIR/key.pem" -out "$NGX_DIR/cert.pem" 2>/dev/null
		NGX_CERT=$NGX_DIR/cert.pem
		NGX_FP=$(openssl x509 -in "$NGX_CERT" -noout -fingerprint -sha256 |
			cut -d= -f2 | tr 'A-F' 'a-f')
		listen="listen 127.0.0.1:$port ssl http2;
		ssl_certificate $NGX_DIR/cert.pem;
		ssl_certificate_key $NGX_DIR/key.pem;"
		NGX_URL=https://127.0.0.1:$port
	fi
	local chunks="try_files \$uri =404;"
	if [ $lua = 1 ]; then
		[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] ||
			skip "nginx Lua module missing (libnginx-mod-http-lua)"
		mods="load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;"
		chunks="content_by_lua_file $TESTS_DIR/lib/fault.lua;"
		echo off >"$NGX_DIR/fault"
	fi
	local authcheck=
	[ -n "$auth" ] && authcheck="if (\$http_authorization != \"Bearer $auth\") { return 401; }"
	cat >"$NGX_DIR/nginx.conf" <<CONF
$mods
daemon off;
master_process off;
worker_processes 1;
error_log $NGX_DIR/error.log warn;
pid $NGX_DIR/nginx.pid;
events { worker_connections 1024; }
http {
	log_format t '\$request_method \$uri \$status \$body_bytes_sent "\$http_authorization"';
	access_log $NGX_DIR/access.log t;
	client_body_temp_path $NGX_DIR/body;
	proxy_temp_path $NGX_DIR/proxy;
	fastcgi_temp_path $NGX_DIR/fastcgi;
	uwsgi_temp_path $NGX_DIR/uwsgi;
	scgi_temp_path $NGX_DIR/scgi;
	default_type application/octet-stream;
	sendfile on;
	keepalive_requests 100000;
	http2_max_concurrent_streams 256;
	$( [ $lua = 1 ] && echo "lua_shared_dict faults 4m;" )
	server {
		$listen
		root $root;
		set \$fault_file $NGX_DIR/fault;
		$authcheck
		location / { autoindex on; autoindex_format json; }
		location /.chunks/ { $chunks }
	}
}
CONF
	nginx -c "$NGX_DIR/nginx.conf" -p "$NGX_DIR" >"$NGX_DIR/stderr" 2>&1 &
	NGX_PID=$!
	cleanup_fn "kill $NGX_PID; wait $NGX_PID"
	for _ in $(seq 1 50); do
		curl -sk -o /dev/null "$NGX_URL/" && return 0
		kill -0 $NGX_PID 2>/dev/null || { cat "$NGX_DIR/stderr" "$NGX_DIR/error.log"; fail "nginx did not start"; }
		sleep 0.1
	done
	fail "nginx not answering on $NGX_URL"
}

nginx_fault() {
	echo "$*" >"$NGX_DIR/fault"
	# counts start afresh for each fault setting
	echo "$RANDOM$RANDOM" >"$NGX_DIR/fault.gen"
}

nginx_count() {
	grep -c -- "$1" "$NGX_DIR/access.log" || true
}

nginx_stop() {
	kill $NGX_PID 2>/dev/null || true
	wait $NGX_PID 2>/dev/null || true
}

# Start the same server again (same port, same config).
nginx_restart() {
	nginx -c "$NGX_DIR/nginx.conf" -p "$NGX_DIR" >>"$NGX_DIR/stderr" 2>&1 &
	NGX_PID=$!
	cleanup_fn "kill $NGX_PID; wait $NGX_PID"
	for _ in $(seq 1 50); do
		curl -sk -o /dev/null "$NGX_URL/" && return 0
		sleep 0.1
	done
	fail "nginx did not come back"
}
