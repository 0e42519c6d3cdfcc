#!/bin/bash
# The wsgate benchmark: the same workloads against wsgate, nginx and HAProxy,
# each terminating TLS 1.3 with the same RSA-2048 certificate on one pinned
# core in front of the same plaintext echo upstream (wsecho), driven by the
# same load generator (wsload) on the other core.  Prints a table of
# absolute figures and ratios and writes tests/bench/results.json.
#
#   tests/bench/run-bench.sh           the full run (installs nginx, haproxy
#                                      and valgrind with apt-get if missing)
#   tests/bench/run-bench.sh --smoke   wsecho + wsgate + wsload, 1-2 s per
#                                      mode; exits non-zero unless every
#                                      mode moved data with no error
#
# Environment: WSGATE (the daemon, default <repo>/wsgate), BENCH_BIN (where
# wsload and wsecho are, default tests/bench next to WSGATE's folder),
# BENCH_SECONDS (measured seconds per workload and round, default 5),
# BENCH_ROUNDS (default 3), BENCH_WARMUP (default 2), BENCH_PROXIES
# (default "wsgate nginx haproxy"),
# BENCH_IDLE_CONNS (default: min(10000, what the file limit allows)),
# BENCH_CALLGRIND (0 skips the valgrind run), BENCH_OUT (results.json path),
# BENCH_KEEP=1 keeps the work folder.
#
# Every process this script starts is stopped by its PID when it exits.

set -u

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
WSGATE=${WSGATE:-$top/wsgate}
BENCH_BIN=${BENCH_BIN:-$(cd "$(dirname "$WSGATE")" && pwd)/tests/bench}
WSLOAD=$BENCH_BIN/wsload
WSECHO=$BENCH_BIN/wsecho
BENCH_SECONDS=${BENCH_SECONDS:-5}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
BENCH_WARMUP=${BENCH_WARMUP:-2}
BENCH_PROXIES=${BENCH_PROXIES:-wsgate nginx haproxy}
# wsgate's TLS 1.3 suites in its order (src/tls.c), given to nginx and
# HAProxy too with the server's preference, so that every proxy negotiates
# the same suite (TLS_AES_128_GCM_SHA256) with wsload.
SUITES=TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
BENCH_CALLGRIND=${BENCH_CALLGRIND:-1}
BENCH_OUT=${BENCH_OUT:-$here/results.json}
PY=/usr/bin/python3

smoke=0
case "${1:-}" in
--smoke) smoke=1 ;;
"") ;;
*) echo "usage: $0 [--smoke]" >&2; exit 2 ;;
esac

for f in "$WSGATE" "$WSLOAD" "$WSECHO"; do
	if [ ! -x "$f" ]; then
		echo "run-bench: $f is missing: build it with make" >&2
		exit 2
	fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/wsbench.XXXXXX")
pids=""

# Stop every process we started, by PID: TERM, then KILL after a grace.
cleanup() {
	local p n
	for p in $pids; do
		kill -TERM "$p" 2>/dev/null
	done
	for n in $(seq 50); do
		local alive=0
		for p in $pids; do
			kill -0 "$p" 2>/dev/null && alive=1
		done
		[ $alive -eq 0 ] && break
		sleep 0.1
	done
	for p in $pids; do
		kill -KILL "$p" 2>/dev/null
	done
	pids=""
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		echo "run-bench: work folder kept: $work" >&2
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "run-bench: $*" >&2; }

# stop_pid PID [GRACE]: stop one of our processes and forget it.
stop_pid() {
	local p=$1 n
	kill -TERM "$p" 2>/dev/null
	for n in $(seq $((${2:-10} * 10))); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	pids=$(echo " $pids " | sed "s/ $p / /")
}

# wait_port PORT SECONDS: until something accepts on 127.0.0.1:PORT.
wait_port() {
	local i
	for i in $(seq $(($2 * 10))); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

free_port() {
	$PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Two cores or more: the proxy gets CPU 0, the load and the echo CPU 1.
if [ "$(nproc)" -ge 2 ]; then
	PIN_PROXY="taskset -c 0"
	PIN_LOAD="taskset -c 1"
else
	PIN_PROXY=""
	PIN_LOAD=""
fi

# One RSA-2048 self-signed certificate for every proxy.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/key.pem" \
    -out "$work/cert.pem" -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null ||
	{ log "openssl req failed"; exit 1; }
cat "$work/cert.pem" "$work/key.pem" >"$work/combined.pem"
# What start_proxy configures: the certificate (cert_tag "" is the RSA-2048
# one above, "4096" the scaling phase's) and the number of workers.
cert_tag=""
workers=1
busy_polling=""

# The upstream.
$PIN_LOAD "$WSECHO" -p 0 >"$work/wsecho.out" 2>&1 &
echo_pid=$!
pids="$pids $echo_pid"
for i in $(seq 50); do
	grep -q listening "$work/wsecho.out" && break
	sleep 0.1
done
echo_port=$(sed -n 's/^listening .*:\([0-9]*\)$/\1/p' "$work/wsecho.out")
[ -n "$echo_port" ] || { log "wsecho did not start"; exit 1; }

write_wsgate_conf() {
	local port=$1 dir=$work/wsgate
	mkdir -p "$dir/policies"
	cat >"$dir/policies/bench.yaml" <<EOF
frames:
  max_frame_size: 64KiB
  max_message_size: 1MiB
  validate_utf8: true
  allow_binary: true
  compression: strip
timeouts:
  idle: 3600s
EOF
	cat >"$dir/wsgate.yaml" <<EOF
workers: $workers
shutdown_timeout: 2s
${busy_polling:+busy_poll: 1ms}
log:
  level: warn
  error_log: $dir/error.log
  access_log: "off"
policies_dir: $dir/policies
upstreams:
  echo:
    servers: [127.0.0.1:$echo_port]
    connect_timeout: 5s
listeners:
  - name: bench
    listen: 127.0.0.1:$port
    tls:
      certificate: $work/cert$cert_tag.pem
      key: $work/key$cert_tag.pem
      min_version: "1.3"
    handshake_timeout: 10s
    routes:
      - path: /echo
        upstream: echo
        policy: bench
EOF
}

write_nginx_conf() {
	local port=$1 dir=$work/nginx
	mkdir -p "$dir/tmp"
	cat >"$dir/nginx.conf" <<EOF
worker_processes $workers;
worker_rlimit_nofile $nofile;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events {
    worker_connections $((nofile * 2));
}
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    upstream echo {
        server 127.0.0.1:$echo_port;
    }
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $work/cert$cert_tag.pem;
        ssl_certificate_key $work/key$cert_tag.pem;
        ssl_protocols TLSv1.3;
        ssl_prefer_server_ciphers on;
        ssl_conf_command Ciphersuites $SUITES;
        location /echo {
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_buffering off;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }
    }
}
EOF
}

write_haproxy_conf() {
	local port=$1 dir=$work/haproxy
	mkdir -p "$dir"
	cat >"$dir/haproxy.cfg" <<EOF
global
    nbthread $workers
${busy_polling:+    busy-polling}
    maxconn $((idle_conns + 50))
    ssl-default-bind-options ssl-min-ver TLSv1.3
    ssl-default-bind-ciphersuites $SUITES
defaults
    mode http
    timeout connect 5s
    timeout client 3600s
    timeout server 3600s
    timeout tunnel 3600s
    timeout http-request 10s
frontend bench
    bind 127.0.0.1:$port ssl crt $work/combined$cert_tag.pem ssl-min-ver TLSv1.3
    maxconn $((idle_conns + 50))
    default_backend echo
backend echo
    server echo 127.0.0.1:$echo_port maxconn $((idle_conns + 50))
EOF
}

# start_proxy NAME PORT [WRAPPER...]: start it pinned; sets proxy_pid (the
# process that relays: nginx's worker) and proxy_main (what we stop).
start_proxy() {
	local name=$1 port=$2 i
	shift 2
	case $name in
	wsgate)
		write_wsgate_conf "$port"
		$PIN_PROXY "$@" "$WSGATE" -c "$work/wsgate/wsgate.yaml" \
		    >"$work/wsgate/stdout.log" 2>&1 &
		;;
	nginx)
		write_nginx_conf "$port"
		$PIN_PROXY nginx -e "$work/nginx/error.log" \
		    -p "$work/nginx" -c "$work/nginx/nginx.conf" \
		    >"$work/nginx/stdout.log" 2>&1 &
		;;
	haproxy)
		write_haproxy_conf "$port"
		$PIN_PROXY haproxy -db -f "$work/haproxy/haproxy.cfg" \
		    >"$work/haproxy/stdout.log" 2>&1 &
		;;
	esac
	proxy_main=$!
	pids="$pids $proxy_main"
	if ! wait_port "$port" 90; then
		log "$name did not accept on port $port"
		cat "$work/$name"/*.log >&2 2>/dev/null
		return 1
	fi
	proxy_pid=$proxy_main
	if [ "$name" = nginx ]; then
		for i in $(seq 50); do
			proxy_pid=$(pgrep -P "$proxy_main" | head -n 1)
			[ -n "$proxy_pid" ] && break
			sleep 0.1
		done
		[ -n "$proxy_pid" ] || { log "no nginx worker"; return 1; }
	fi
	return 0
}

# load OUTFILE ARGS...: one wsload run pinned to the load core; its JSON
# line goes to OUTFILE and to stderr.
# On two cores or more the line gets "load_core_busy": the share of the
# load core (wsload and wsecho) that was busy while wsload ran (set-up and
# warm-up included), from /proc/stat,
# to show when the load generator rather than the proxy set the rate.
load() {
	local out=$1 c0 c1 busy
	shift
	c0=$(cpu_ticks 1)
	$PIN_LOAD "$WSLOAD" "$@" >"$out" 2>"$out.err"
	local rc=$?
	c1=$(cpu_ticks 1)
	if [ -n "$PIN_LOAD" ] && [ -n "$c0" ] && [ -n "$c1" ] &&
	    grep -q '}$' "$out"; then
		busy=$(echo "$c0 $c1" | awk '{ t = $3 - $1; b = $4 - $2;
		    printf "%.3f", (t > 0 ? b / t : 0) }')
		case $busy in
		[0-9]*.[0-9]*)
			sed -i "s/}\$/,\"load_core_busy\":$busy}/" "$out" ;;
		esac
	fi
	log "  $(basename "$out" .json): $(cat "$out")"
	return $rc
}

# cpu_ticks N: "total busy" jiffies of CPU N so far.
cpu_ticks() {
	awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= 9 && i <= NF; i++) t += $i;
	    print t, t - $5 - $6 }' /proc/stat
}

vmrss_kb() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# -- smoke ---------------------------------------------------------------------

if [ $smoke -eq 1 ]; then
	port=$(free_port)
	nofile=1024
	start_proxy wsgate "$port" || exit 1
	url=wss://127.0.0.1:$port/echo
	mkdir -p "$work/smoke"
	load "$work/smoke/echo.json" -m echo -c 4 -s 32 -k 2 -t -d 1 -w 0.3 \
	    -p "$proxy_pid" "$url"
	load "$work/smoke/echo16k.json" -m echo -c 2 -s 16384 -k 2 -d 1 \
	    -w 0.2 "$url"
	load "$work/smoke/flood.json" -m flood -c 2 -s 1024 -d 1 -w 0.2 "$url"
	load "$work/smoke/idle.json" -m idle -c 50 -d 1 "$url"
	load "$work/smoke/handshake.json" -m handshake -c 2 -d 1 -w 0.2 "$url"
	load "$work/smoke/tickets.json" -m handshake -c 2 -d 1 -w 0.2 -T "$url"
	# the scaling phase's set-up: two workers
	stop_pid "$proxy_main"
	port=$(free_port)
	workers=2
	start_proxy wsgate "$port" || exit 1
	load "$work/smoke/workers2.json" -m handshake -c 4 -d 1 -w 0.2 \
	    "wss://127.0.0.1:$port/echo"
	$PY - "$work/smoke" <<'EOF'
import json, os, sys
d = sys.argv[1]
bad = 0
for name in sorted(os.listdir(d)):
    if not name.endswith(".json"):
        continue
    text = open(os.path.join(d, name)).read().strip()
    try:
        r = json.loads(text)
    except ValueError:
        print("smoke %s: not one JSON line: %r" % (name, text))
        bad += 1
        continue
    ok = r["messages"] > 0 and r["errors"] == 0 and not r["setup_failed"]
    if name == "tickets.json":
        ok = ok and r["resumed"] > 0
    print("smoke %s: %s (messages %d, errors %d%s)" % (
        name, "ok" if ok else "FAILED", r["messages"], r["errors"],
        ", " + r["first_error"] if r["first_error"] else ""))
    bad += not ok
sys.exit(1 if bad else 0)
EOF
	rc=$?
	if [ $rc -ne 0 ]; then
		cat "$work/wsgate/error.log" "$work/wsgate/stdout.log" >&2 \
		    2>/dev/null
	fi
	exit $rc
fi

# -- the full run ----------------------------------------------------------------

# Debian's packages; services are not started by the install.
missing=""
command -v nginx >/dev/null || missing="$missing nginx"
command -v haproxy >/dev/null || missing="$missing haproxy"
command -v valgrind >/dev/null || missing="$missing valgrind"
if [ -n "$missing" ]; then
	log "installing$missing"
	made_policy=0
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		made_policy=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	{ apt-get update -q && apt-get install -y -q $missing; } \
	    >"$work/apt.log" 2>&1
	rc=$?
	[ $made_policy -eq 1 ] && rm -f /usr/sbin/policy-rc.d
	if [ $rc -ne 0 ]; then
		tail -20 "$work/apt.log" >&2
		log "apt-get failed"
		exit 1
	fi
fi

# Idle connections: each costs the proxy two descriptors and the load and
# the echo one each; keep headroom under the hard limit.
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=1048576
ulimit -n "$hard"
nofile=$hard
idle_max=$(((hard - 200) / 2))
idle_conns=${BENCH_IDLE_CONNS:-$((idle_max < 10000 ? idle_max : 10000))}

S=$BENCH_SECONDS
W=$BENCH_WARMUP
res=$work/results
mkdir -p "$res"

# Every proxy runs at once, each on its own port and pinned to the proxy
# core (an idle one costs nothing), and each round runs every workload
# against each proxy in turn: a change in the machine's load during the
# run then reaches all of them, and report.py takes the median per figure.
declare -A main_of pid_of url_of
for name in $BENCH_PROXIES; do
	mkdir -p "$res/$name"
	port=$(free_port)
	start_proxy "$name" "$port" || exit 1
	main_of[$name]=$proxy_main
	pid_of[$name]=$proxy_pid
	url_of[$name]=wss://127.0.0.1:$port/echo
done
for r in $(seq "$BENCH_ROUNDS"); do
	log "== round $r of $BENCH_ROUNDS"
	for w in small_k1 small_k2 small_k3 small_k4 large latency \
	    handshake handshake_tickets; do
		case $w in
		small_k*) args="-m echo -c 64 -s 32 -k ${w#small_k} -t -w $W" ;;
		large) args="-m echo -c 16 -s 16384 -k 4 -t -w $W" ;;
		latency) args="-m echo -c 1 -s 32 -k 1 -t -w $W" ;;
		handshake) args="-m handshake -c 16 -w 1" ;;
		handshake_tickets) args="-m handshake -c 16 -T -w 1" ;;
		esac
		for name in $BENCH_PROXIES; do
			log " $name"
			load "$res/$name/$w.r$r.json" $args -d "$S" \
			    -p "${pid_of[$name]}" "${url_of[$name]}"
		done
	done
	# One core's RSA-2048 signing rate, for the handshake target, in
	# every round: a single figure taken while the host was busy would
	# flatter every ratio against it.  The report takes the highest.
	# X25519 too: a handshake's key exchange, for the ceiling report.py
	# gives beside the target.
	log " openssl speed rsa2048 ecdhx25519"
	$PIN_PROXY openssl speed -seconds 3 rsa2048 ecdhx25519 \
	    >"$res/speed.r$r.txt" 2>/dev/null
	awk '/^rsa 2048 bits/ { s = $6; v = $7 }
	    /ecdh \(X25519\)/ { x = $NF }
	    END { if (s == "") exit
		printf "{\"sign_per_s\":%s,\"verify_per_s\":%s", s, v
		if (x != "") printf ",\"x25519_per_s\":%s", x
		print "}" }' "$res/speed.r$r.txt" >"$res/speed.r$r.json"
	cat "$res/speed.r$r.json" >&2
done
# System calls per message, the proxy's own: perf stat on the
# raw_syscalls tracepoint, over a run of each of the two echo workloads
# kept out of the figures above (counting makes every system call a little
# dearer, and so costs more to a proxy that makes more of them).  The
# count starts after the warm-up and lasts the measured seconds.  The same
# window counts the proxy's context switches: one worker thread switches
# out when it waits for the next event, so they count its naps, each paid
# for in going to sleep and being woken.  Skipped without perf.
if command -v perf >/dev/null 2>&1; then
	for w in small large; do
		case $w in
		small) args="-m echo -c 64 -s 32 -k 4 -t" ;;
		large) args="-m echo -c 16 -s 16384 -k 4 -t" ;;
		esac
		for name in $BENCH_PROXIES; do
			log " $name: system calls, $w"
			out=$res/$name/sys_$w.json
			(sleep "$W"; exec perf stat -x, \
			    -e raw_syscalls:sys_enter,context-switches \
			    -p "${pid_of[$name]}" -o "$out.perf" -- sleep "$S") \
			    >/dev/null 2>&1 &
			perf_pid=$!
			pids="$pids $perf_pid"
			load "$out" $args -w "$W" -d "$S" -p "${pid_of[$name]}" \
			    "${url_of[$name]}"
			wait "$perf_pid"
			pids=$(echo " $pids " | sed "s/ $perf_pid / /")
			n=$(awk -F, '/raw_syscalls:sys_enter/ { print $1 }' \
			    "$out.perf" 2>/dev/null)
			cs=$(awk -F, '$3 == "context-switches" { print $1 }' \
			    "$out.perf" 2>/dev/null)
			case $n in
			[0-9]*) sed -i "s/}\$/,\"proxy_syscalls\":$n,\"syscall_window_s\":$S}/" \
			    "$out" ;;
			*) log "  perf stat counted nothing" ;;
			esac
			case $cs in
			[0-9]*) sed -i "s/}\$/,\"proxy_cswitches\":$cs}/" "$out" ;;
			esac
		done
	done
else
	log "perf not found: no system-call counts"
fi
for name in $BENCH_PROXIES; do
	stop_pid "${main_of[$name]}"
done

# Two workers against one (issue 6: "two must scale").  On two cores the
# load generator's half of an RSA-2048 handshake (the key exchange, the
# signature check, the kernel's part of every packet) takes the core a
# second worker would need, and no proxy gains; with an RSA-4096
# certificate the proxy's signature costs about eight times as much and
# the load's side little more, so the proxy is what sets the rate.
# Nothing is pinned here: each proxy runs with 1 and then 2 workers
# (nginx worker_processes, HAProxy nbthread), started fresh, 32
# connections at once, full handshakes; every round takes every proxy in
# turn.  One core's RSA-4096 signing rate is taken once, for scale.
openssl req -x509 -newkey rsa:4096 -nodes -keyout "$work/key4096.pem" \
    -out "$work/cert4096.pem" -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null ||
	{ log "openssl req (RSA-4096) failed"; exit 1; }
cat "$work/cert4096.pem" "$work/key4096.pem" >"$work/combined4096.pem"
pin_proxy=$PIN_PROXY
pin_load=$PIN_LOAD
PIN_PROXY=""
PIN_LOAD=""
cert_tag=4096
for r in $(seq "$BENCH_ROUNDS"); do
	log "== scaling, round $r of $BENCH_ROUNDS (RSA-4096, not pinned)"
	for workers in 1 2; do
		for name in $BENCH_PROXIES; do
			log " $name, $workers worker(s)"
			port=$(free_port)
			start_proxy "$name" "$port" || exit 1
			load "$res/$name/scale_w$workers.r$r.json" -m handshake \
			    -c 32 -w 1 -d "$S" "wss://127.0.0.1:$port/echo"
			stop_pid "$proxy_main"
		done
	done
done
log " openssl speed rsa4096"
openssl speed -seconds 3 rsa4096 2>/dev/null |
    awk '/^rsa 4096 bits/ { printf "{\"sign4096_per_s\":%s}\n", $6 }' \
    >"$res/speed4096.json"
cat "$res/speed4096.json" >&2
cert_tag=""
workers=1
PIN_PROXY=$pin_proxy
PIN_LOAD=$pin_load

# Busy polling: a proxy that polls instead of sleeping does not wait for
# its core to be woken at each hop, which on a virtual machine is most of
# a small round trip.  wsgate's busy_poll (1ms: it sleeps once traffic
# has paused that long) and HAProxy's busy-polling (it never sleeps);
# nginx has no such setting.  A polling proxy keeps the shared proxy core
# busy, so each runs alone, started fresh: the 1-connection latency and
# the k=4 small-message workload, for what the polling costs in CPU.
busy_polling=1
for r in $(seq "$BENCH_ROUNDS"); do
	log "== busy polling, round $r of $BENCH_ROUNDS"
	for name in wsgate haproxy; do
		echo " $BENCH_PROXIES " | grep -q " $name " || continue
		log " $name"
		port=$(free_port)
		start_proxy "$name" "$port" || exit 1
		load "$res/$name/busy_latency.r$r.json" -m echo -c 1 -s 32 -k 1 \
		    -t -w "$W" -d "$S" -p "$proxy_pid" \
		    "wss://127.0.0.1:$port/echo"
		load "$res/$name/busy_small.r$r.json" -m echo -c 64 -s 32 -k 4 \
		    -t -w "$W" -d "$S" -p "$proxy_pid" \
		    "wss://127.0.0.1:$port/echo"
		stop_pid "$proxy_main"
	done
done
busy_polling=""

# Idle connections on a fresh process, after a short warm-up.
for name in $BENCH_PROXIES; do
	log "== $name: idle connections"
	d=$res/$name
	port=$(free_port)
	start_proxy "$name" "$port" || exit 1
	url=wss://127.0.0.1:$port/echo
	load "$d/idle_warm.json" -m echo -c 10 -s 32 -k 1 -t -d 1 -w 0 "$url"
	sleep 1
	rss0=$(vmrss_kb "$proxy_pid")
	rm -f "$d/idle.ready"
	$PIN_LOAD "$WSLOAD" -m idle -c "$idle_conns" -d 300 -o 30 \
	    -r "$d/idle.ready" "$url" >"$d/idle.json" 2>"$d/idle.json.err" &
	lpid=$!
	pids="$pids $lpid"
	while [ ! -e "$d/idle.ready" ] && kill -0 "$lpid" 2>/dev/null; do
		sleep 0.2
	done
	sleep 2
	rss1=$(vmrss_kb "$proxy_pid")
	stop_pid "$lpid"
	log "  idle: $(cat "$d/idle.json")"
	echo "{\"connections\":$idle_conns,\"rss_before_kb\":$rss0,\"rss_after_kb\":$rss1}" \
	    >"$d/idle_rss.json"
	log "  idle RSS: $rss0 kB -> $rss1 kB for $idle_conns connections"
	stop_pid "$proxy_main"
done

# Instructions per round trip under callgrind: two runs that differ only in
# the number of messages, so start-up and the TLS handshake cancel out.
if [ "$BENCH_CALLGRIND" != 0 ] && echo " $BENCH_PROXIES " | grep -q " wsgate "; then
	log "== callgrind"
	for n in 2000 22000; do
		port=$(free_port)
		start_proxy wsgate "$port" valgrind --tool=callgrind \
		    --callgrind-out-file="$res/callgrind.$n.out" || exit 1
		load "$res/callgrind_$n.json" -m echo -c 1 -s 32 -k 1 -t \
		    -n "$n" -w 0 -d 600 -o 60 "wss://127.0.0.1:$port/echo"
		stop_pid "$proxy_main" 60
	done
	if command -v callgrind_annotate >/dev/null; then
		callgrind_annotate --inclusive=no "$res/callgrind.22000.out" \
		    2>/dev/null | head -60 >"$res/callgrind_top.txt"
	fi
fi

$PY "$here/report.py" "$res" "$BENCH_OUT" "$BENCH_SECONDS" "$idle_conns"
