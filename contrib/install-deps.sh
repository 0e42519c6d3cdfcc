#!/bin/sh
# Install what wsgate needs to build, run and test on Debian 12, from
# Debian's packages only.  Idempotent: does nothing when all is there.
set -eu

PKGS="build-essential autoconf automake pkg-config
libevent-dev libssl-dev libpcre2-dev libyaml-dev libmaxminddb-dev
libhiredis-dev libjansson-dev libmaxmind-db-writer-perl
openssl ca-certificates
python3 python3-websockets python3-jwt python3-pytest python3-prometheus-client
mandoc clang libclang-rt-14-dev"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
	    grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
if [ -z "$missing" ]; then
	echo "install-deps: all packages present"
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
