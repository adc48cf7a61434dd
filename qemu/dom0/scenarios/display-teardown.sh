#!/bin/sh
# Display teardown: two guests with the display device and many frames to show, the first
# ended by `xl shutdown`, the second by `xl destroy`, each while it is flipping. Per guest:
#   1. xl create (paused until its domain id is known), unpause;
#   2. wait (60 s) until the backend has captured 4 of its frames;
#   3. xl shutdown (or xl destroy) and wait until the guest leaves `xl list` (end_guest in
#      lib.sh; the time is printed as a figure, 30 s catch a hang). After xl shutdown the guest
#      tears the display down (disable, detach, destroy, Closing), returns every grant and
#      powers off; after xl destroy the toolstack asks the backend to close (backend state
#      Closing) and waits for Closed. Either way the backend must then release the device
#      (wait_released in lib.sh);
#   4. print its console logs and xl's log.
# Ends with `rig: display teardown ok (2 guests)` or `rig: display teardown failed: ...`.
. /rig/lib.sh

GUEST_CONFIG=$DISPLAY_CONFIG
FLIP_TIMEOUT_MS=60000
FLIPS_BEFORE_END=4

# wait_flipping DOMID: wait until the backend printed $FLIPS_BEFORE_END frame lines of DOMID.
wait_flipping() {
    local began count now
    began=$(uptime_ms)
    while :; do
        count=$(grep -c "^frame .* dom=$1 " "$BACKEND_LOG")
        if [ "$count" -ge "$FLIPS_BEFORE_END" ]; then
            say "domain $1 is flipping ($count frames captured after $(($(uptime_ms) - began)) ms)"
            return 0
        fi
        if ! xl list "$GUEST_NAME" >/dev/null 2>&1; then
            say "guest (domain $1) gone before flipping"
            return 1
        fi
        now=$(uptime_ms)
        if [ $((now - began)) -ge "$FLIP_TIMEOUT_MS" ]; then
            say "domain $1 captured $count frames in $((FLIP_TIMEOUT_MS / 1000)) s (timeout)"
            return 1
        fi
        sleep 0.1
    done
}

# run_guest N ACTION: guest number N, from xl create to gone, ended with `xl ACTION`.
run_guest() {
    local began domid
    say "guest $1 of 2: ended by xl $2 while flipping"
    clear_console_logs
    began=$(uptime_ms)
    if ! create_guest -p; then
        say "xl create failed"
        fail "guest $1: xl create"
        show_console_logs
        return
    fi
    domid=$(xl domid "$GUEST_NAME")
    xl unpause "$GUEST_NAME"
    say "guest created after $(($(uptime_ms) - began)) ms (domain ${domid:-unknown})"
    if [ -z "$domid" ]; then
        fail "guest $1: xl domid"
    elif wait_flipping "$domid"; then
        end_guest "$2" || fail "guest $1: xl $2"
        wait_released "$domid" "$2" || fail "guest $1: backend release"
    else
        fail "guest $1: flipping"
    fi
    if xl list "$GUEST_NAME" >/dev/null 2>&1; then
        say "destroying guest $1"
        xl destroy "$GUEST_NAME"
    fi
    # xenconsoled writes the logs as it drains the rings; give it a moment after the domain died.
    sleep 0.2
    show_console_logs
}

if ! start_backend; then
    exit 1
fi
run_guest 1 shutdown
run_guest 2 destroy
stop_backend
if [ -z "$failures" ]; then
    say "display teardown ok (2 guests)"
else
    say "display teardown failed: $failures"
    exit 1
fi
