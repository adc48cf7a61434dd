#!/bin/sh
# Grant loopback: the Dom0 tools of the grant test, without the guest. vdispl-grant-offer grants
# a page of Dom0's own, filled with the shared test pattern, read-only to Dom0 itself, and
# vdispl-grant-check reads it back through gntdev: with the right seed it matches, with another
# seed it differs, and an unknown grant reference is an error that names the failing step.
# Ends with `rig: grant loopback ok` or `rig: grant loopback failed: ...`.
. /rig/lib.sh

SEED=305419896
OFFER_OUT=/tmp/grant-offer.out
OFFER_TIMEOUT_MS=30000

vdispl-grant-offer 0 "$SEED" 30 >"$OFFER_OUT" &
offer=$!
began=$(uptime_ms)
gref=""
while [ -z "$gref" ]; do
    gref=$(sed -n 's/^rig: Dom0 grants \([0-9][0-9]*\) .*/\1/p' "$OFFER_OUT")
    if [ -n "$gref" ]; then
        break
    fi
    if ! kill -0 "$offer" 2>/dev/null || [ "$(uptime_ms)" -ge $((began + OFFER_TIMEOUT_MS)) ]; then
        cat "$OFFER_OUT"
        say "grant loopback failed: vdispl-grant-offer gave no grant reference"
        kill "$offer" 2>/dev/null
        exit 1
    fi
    sleep 0.05
done
cat "$OFFER_OUT"

failures=""
# expect STATUS ARGS...: run vdispl-grant-check ARGS, which must exit with STATUS.
expect() {
    local want=$1 got
    shift
    say "vdispl-grant-check $* (should exit with $want)"
    vdispl-grant-check "$@"
    got=$?
    if [ "$got" -ne "$want" ]; then
        say "vdispl-grant-check $* exited with $got, not $want"
        failures="$failures${failures:+, }vdispl-grant-check $*"
    fi
}
expect 0 0 "$gref" "$SEED"
expect 1 0 "$gref" $((SEED + 1))
expect 2 0 $((gref + 1000)) "$SEED"
# A second check of the same grant proves the first one unmapped it cleanly.
expect 0 0 "$gref" "$SEED"

kill "$offer"
wait "$offer" 2>/dev/null
if [ -z "$failures" ]; then
    say "grant loopback ok"
else
    say "grant loopback failed: $failures"
    exit 1
fi
