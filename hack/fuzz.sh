#!/usr/bin/env bash
# Runs every fuzz target (each `func Fuzz...` in a _test.go file) whose name
# matches FUZZ, one after the other, for FUZZTIME each (make fuzz).
#
#   FUZZTIME=10s FUZZMINTIME=1s FUZZ=. GO=go TAGS=nri_no_wasm hack/fuzz.sh
#
# Go 1.26's fuzz coordinator can fail a target with a bare "context deadline
# exceeded" when -fuzztime ends while a worker is mid-call (go.dev/issue/75804,
# fixed in Go 1.27): no input failed and none is written. Such a run is tried
# again, up to twice; a run that found a failing input (it prints "Failing
# input written to" and leaves it in testdata/fuzz/) fails at once, as does
# any other failure.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${FUZZTIME:=10s}" "${FUZZMINTIME:=1s}" "${FUZZ:=.}" "${GO:=go}" "${TAGS:=nri_no_wasm}"

run() { # fn dir
	"$GO" test -tags "$TAGS" -run '^$' -fuzz "^$1\$" -fuzztime "$FUZZTIME" \
		-fuzzminimizetime "$FUZZMINTIME" "$2/"
}

# coordinatorRace says whether a failed run's output is go.dev/issue/75804
# and nothing else.
coordinatorRace() {
	grep -q '^    context deadline exceeded$' "$1" && ! grep -q 'Failing input written to' "$1"
}

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for f in $(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do
	dir=$(dirname "$f")
	for fn in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$f" | grep -E "$FUZZ"); do
		for try in 1 2 3; do
			echo "== $fn ($dir, $FUZZTIME)"
			run "$fn" "$dir" 2>&1 | tee "$out"
			[ "${PIPESTATUS[0]}" = 0 ] && break
			if [ "$try" = 3 ] || ! coordinatorRace "$out"; then
				echo "fuzz: $fn failed" >&2
				exit 1
			fi
			echo "fuzz: $fn stopped on Go's fuzz-coordinator deadline race (go.dev/issue/75804), no failing input; again" >&2
		done
	done
done
