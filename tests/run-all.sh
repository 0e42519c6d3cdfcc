#!/bin/sh
# Run every test stage against the builds made by contrib/quickstart.sh
# (build/, build-asan/, build-fuzz/ when clang is there).  Each stage prints
# "STAGE: N passed, N failed"; the last line is the total.  Exit 1 if
# anything failed or if a stage ran nothing.
set -u
cd "$(dirname "$0")/.."
top=$(pwd)
PY=/usr/bin/python3
FUZZ_SECONDS=${FUZZ_SECONDS:-12}
tp=0
tf=0

# record STAGE PASSED FAILED
record() {
	echo "$1: $2 passed, $3 failed"
	tp=$((tp + $2))
	tf=$((tf + $3))
	if [ "$2" -eq 0 ] && [ "$3" -eq 0 ]; then
		echo "$1: ran nothing" >&2
		tf=$((tf + 1))
	fi
}

# Unit tests through automake's harness; counts come from each program's
# closing "NAME: N passed, N failed" line.  A make job per core: the
# test programs are built by `make check`, and the harness runs them side
# by side (each has its own ports and files).
unit() {
	dir=$1
	make -s -C "$dir" -j"$(nproc 2>/dev/null || echo 1)" check \
	    >"$dir/check.out" 2>&1
	rc=$?
	p=0
	f=0
	for log in "$dir"/tests/unit/*.log; do
		[ -f "$log" ] || continue
		line=$(grep -E '^test_[a-z0-9_]+: [0-9]+ passed, [0-9]+ failed$' \
		    "$log" | tail -n 1)
		if [ -z "$line" ]; then
			echo "$log: no result line (crashed?)" >&2
			sed -n '1,40p' "$log" >&2
			f=$((f + 1))
			continue
		fi
		p=$((p + $(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')))
		f=$((f + $(echo "$line" | sed -E 's/.*, ([0-9]+) failed/\1/')))
	done
	if [ $rc -ne 0 ]; then
		grep -hE 'FAIL|check failed|ERROR|Sanitizer' "$dir/check.out" \
		    "$dir"/tests/unit/*.log 2>/dev/null | head -40 >&2
		[ "$f" -eq 0 ] && f=1
	fi
	record "unit($dir)" "$p" "$f"
}

# Integration tests: the real daemon of a build under pytest.  Against a
# sanitizer build, LeakSanitizer checks the daemon at every exit; conftest.py
# fails the test whose gateway printed a sanitizer report to its stderr.
# Most of the suite's time is waiting (timeouts, lingers, slow peers), so
# pytest-xdist runs one file per core at a time (--dist loadfile: a file's
# tests share their module fixtures, and the quickstart tests' fixed ports
# stay in one process); INTEGRATION_JOBS=1 runs them in this process.
integration() {
	dir=$1
	xml="$top/$dir/pytest.xml"
	rm -f "$xml"
	jobs=${INTEGRATION_JOBS:-$(nproc 2>/dev/null || echo 1)}
	[ "$jobs" -gt 4 ] && jobs=4
	par=""
	[ "$jobs" -gt 1 ] && par="-n $jobs --dist loadfile"
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:quarantine_size_mb=16 \
	UBSAN_OPTIONS=print_stacktrace=1 \
	WSGATE="$top/$dir/wsgate" $PY -m pytest -q -p no:cacheprovider $par \
	    --junitxml="$xml" tests/integration 2>&1 | tail -n 30
	if [ ! -f "$xml" ]; then
		record "integration($dir)" 0 1
		return
	fi
	set -- $($PY - "$xml" <<'PYEOF'
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
s = r if r.tag == "testsuite" else r.find("testsuite")
t, f, e, k = (int(s.get(a, 0)) for a in ("tests", "failures", "errors", "skipped"))
print(t - f - e - k, f + e)
PYEOF
)
	record "integration($dir)" "$1" "$2"
}

# Each libFuzzer harness for a short, bounded time on a scratch corpus.
# They run one after another in the background while the integration
# suite runs, at the lowest priority: that suite mostly waits (timeouts,
# lingers, slow peers; it keeps about a fifth of two cores busy), so the
# harnesses get the core it leaves idle, and a test that wants both cores
# gets them first.  As a stage of their own, two at a time, they were a
# minute of the suite's time.  An input that crashed is left in the build
# folder as fuzz-NAME-crash-* (as `make fuzz` leaves it), not in the
# source tree.
fuzz_one() {
	bin=$1
	name=$(basename "$bin" | sed 's/^fuzz_//')
	work=$(mktemp -d)
	cp -r "tests/fuzz/corpus/$name/." "$work/" 2>/dev/null
	dict=""
	[ -f "tests/fuzz/$name.dict" ] && dict="-dict=tests/fuzz/$name.dict"
	nice -n 19 "$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 \
	    -rss_limit_mb=1024 -artifact_prefix="$dir/fuzz-$name-" $dict \
	    "$work" >"$dir/fuzz_$name.out" 2>&1
	echo $? >"$dir/fuzz_$name.rc"
	rm -rf "$work"
}

# fuzz_start DIR: start the harnesses of DIR in the background.
fuzz_start() {
	rm -f "$1"/fuzz_*.rc
	(
		dir=$1
		for bin in "$dir"/tests/fuzz/fuzz_*; do
			[ -x "$bin" ] || continue
			fuzz_one "$bin"
		done
	) &
	fuzz_pid=$!
}

# fuzz DIR: wait for the harnesses fuzz_start began and count them.
fuzz() {
	dir=$1
	p=0
	f=0
	wait "$fuzz_pid"
	for bin in "$dir"/tests/fuzz/fuzz_*; do
		[ -x "$bin" ] || continue
		name=$(basename "$bin" | sed 's/^fuzz_//')
		if [ "$(cat "$dir/fuzz_$name.rc" 2>/dev/null)" = 0 ]; then
			p=$((p + 1))
		else
			f=$((f + 1))
			echo "fuzz_$name failed:" >&2
			tail -n 40 "$dir/fuzz_$name.out" >&2
		fi
	done
	record "fuzz($dir)" "$p" "$f"
}

# The man pages must be mandoc -Tlint clean.
manlint() {
	out=$(mandoc -Tlint -Wwarning man/*.[0-9] 2>&1)
	if [ -z "$out" ]; then
		record "manlint" 1 0
	else
		echo "$out" >&2
		record "manlint" 0 1
	fi
}

unit build
unit build-asan
manlint
# The integration suite runs once, against the ASan/UBSan daemon: slower
# per test than the plain build, but it is the run that can find memory
# errors and leaks; the plain build is covered by the unit tests and the
# benchmark smoke test.  The fuzz harnesses run meanwhile.
if [ -d build-fuzz ]; then
	fuzz_start build-fuzz
fi
integration build-asan
if [ -d build-fuzz ]; then
	fuzz build-fuzz
fi
echo "total: $tp passed, $tf failed"
[ "$tf" -eq 0 ]
