#!/bin/sh
# The two quick-start commands of README.md:
#   sh contrib/quickstart.sh run    install, build, run the demo
#   sh contrib/quickstart.sh test   install, build, run the whole test suite
set -eu

cd "$(dirname "$0")/.."
top=$(pwd)
jobs=$(nproc 2>/dev/null || echo 2)

# Configure (once) and build in a separate folder: build DIR [configure args]
build() {
	dir=$1
	shift
	[ -x configure ] || autoreconf -fi >/dev/null
	mkdir -p "$dir"
	if [ ! -f "$dir/Makefile" ]; then
		(cd "$dir" && "$top/configure" -q "$@")
	fi
	make -s -C "$dir" -j"$jobs"
}

# Fail unless 127.0.0.1:PORT is free to listen on: port_free PORT WHOSE.
# Bound as the demo backend and wsgate bind it (SO_REUSEADDR, so a closing
# connection does not count) but without SO_REUSEPORT, with which a second
# wsgate would share the port unnoticed.
port_free() {
	/usr/bin/python3 -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1" && return 0
	echo "quickstart: 127.0.0.1:$1, the port of $2, is in use: stop" \
	    "the process holding it (ss -ltnp 'sport = :$1' shows it) and" \
	    "run again" >&2
	return 1
}

case "${1:-}" in
run)
	sh contrib/install-deps.sh run
	build build
	mkdir -p etc/tls
	# Made anew once expired: it is valid for 365 days.
	if [ ! -f etc/tls/server.pem ] || ! openssl x509 -checkend 0 \
	    -noout -in etc/tls/server.pem >/dev/null 2>&1; then
		echo "quickstart: making a self-signed certificate in etc/tls/"
		openssl req -x509 -newkey rsa:2048 -nodes -days 365 \
		    -subj /CN=localhost \
		    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
		    -keyout etc/tls/server.key -out etc/tls/server.pem \
		    2>/dev/null
	fi
	# Start nothing while a port is held: the backend would die and wsgate
	# relay to whatever holds 9001, or share 8443 with another wsgate.
	taken=0
	port_free 9001 "the demo backend" || taken=1
	port_free 8443 wsgate || taken=1
	[ "$taken" -eq 0 ] || exit 1
	/usr/bin/python3 contrib/demo-backend.py --host 127.0.0.1 \
	    --port 9001 &
	backend=$!
	trap 'kill $backend 2>/dev/null' EXIT
	cat <<MSG

wsgate is starting on wss://127.0.0.1:8443/echo in front of the demo
echo backend on 127.0.0.1:9001 (self-signed certificate: etc/tls/server.pem).
Connect from another terminal, for example:

  /usr/bin/python3 -c 'import asyncio, ssl, websockets
ctx = ssl.create_default_context(cafile="$top/etc/tls/server.pem")
async def main():
    async with websockets.connect("wss://127.0.0.1:8443/echo", ssl=ctx) as ws:
        await ws.send("hello"); print(await ws.recv())
asyncio.run(main())'

Stop with Ctrl-C (wsgate drains: clients get close 1001).

MSG
	# In the background, so that a SIGTERM to this script is seen at once
	# (a foreground child defers the trap) and passed on to both.
	build/wsgate -c etc/wsgate.yaml &
	gateway=$!
	trap 'kill $gateway $backend 2>/dev/null' INT TERM
	status=0
	wait $gateway || status=$?
	# A signal ends the wait early: wait on while wsgate drains.
	while kill -0 $gateway 2>/dev/null; do
		status=0
		wait $gateway || status=$?
	done
	exit $status
	;;
test)
	sh contrib/install-deps.sh
	build build
	build build-asan --enable-asan --enable-failalloc
	if command -v clang >/dev/null 2>&1; then
		build build-fuzz --enable-fuzzing CC=clang
	fi
	sh tests/run-all.sh
	;;
*)
	echo "usage: sh contrib/quickstart.sh run|test" >&2
	exit 1
	;;
esac
