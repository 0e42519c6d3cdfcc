#!/bin/sh
# Install what wsgate needs to build, run and test on Debian 12, from
# Debian's packages, plus playwright-core from the npm registry for the
# browser test (tests/browser, driving Debian's chromium).  Idempotent:
# does nothing when all is there.
#   sh contrib/install-deps.sh       everything (quickstart.sh test)
#   sh contrib/install-deps.sh run   only what building wsgate and running
#                                    the demo need (quickstart.sh run)
set -eu

cd "$(dirname "$0")/.."

# Build: the compiler, autotools and the libraries configure asks for.
# Run: openssl for the demo certificate, python3-websockets for
# contrib/demo-backend.py.
PKGS="build-essential autoconf automake pkg-config
libevent-dev libssl-dev libpcre2-dev libyaml-dev libmaxminddb-dev
libhiredis-dev libjansson-dev
openssl python3 python3-websockets"

case "${1:-}" in
run)
	tests=no
	;;
"")
	tests=yes
	PKGS="$PKGS libmaxmind-db-writer-perl redis-server ca-certificates
python3-jwt python3-cryptography python3-yaml
python3-pytest python3-pytest-xdist python3-prometheus-client
mandoc clang libclang-rt-14-dev
chromium slowhttptest testssl.sh strace"
	# Node.js and npm are usually preinstalled; take Debian's when they
	# are not.
	if ! command -v node >/dev/null 2>&1 ||
	    ! command -v npm >/dev/null 2>&1; then
		PKGS="$PKGS nodejs npm"
	fi
	;;
*)
	echo "usage: sh contrib/install-deps.sh [run]" >&2
	exit 1
	;;
esac

# The browser test's driver: playwright-core, exactly as package-lock.json
# pins it.  It downloads no browser; the test uses /usr/bin/chromium.
npm_deps() {
	if [ "$tests" = no ] ||
	    [ -f tests/browser/node_modules/playwright-core/package.json ]; then
		return 0
	fi
	echo "install-deps: npm ci in tests/browser"
	npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
}

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
	    grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
if [ -z "$missing" ]; then
	echo "install-deps: all packages present"
	npm_deps
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing:$missing (run as root)" >&2
	exit 1
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
npm_deps
