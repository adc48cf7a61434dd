#!/bin/sh
# Recovery: the display backend is killed (SIGKILL) and restarted $CYCLES times while the guest
# flips. The guest has two small connectors (so frames come quickly) and many frames to show.
#   1. start vdispl-backend, xl create the guest, wait until both connectors flip;
#   2. per cycle: kill -KILL the backend (Linux unmaps its grants and unbinds its event
#      channels as the process dies; its xenstore nodes stay, state Connected), wait
#      $DEAD_MS, start it again: it finds the device Connected with nothing mapped and says
#      Closed; the guest's watch on the backend state sees that, tears the device down (grants
#      ended, event channels closed), goes back to Initialising, finds InitWait and connects
#      again; wait (60 s) until the new backend captured $FLIPS_PER_CYCLE frames of each
#      connector;
#   3. xl shutdown the guest (10 s at most), print its console logs (in a section that
#      `cargo xtask test` reads to hold the frames of all the backend processes against the
#      goldens of the guest's flip lines, by content), then compare the figures
#      the guest printed after each connection (`display: device 0 connection <n> closed:
#      <g> grants in use, heap in use <b> bytes, at baseline`) with its baseline line.
# Ends with `rig: recovery ok (...)` or `rig: recovery failed: ...`.
. /rig/lib.sh

CYCLES=${RECOVERY_CYCLES:-5}
# How long the backend stays dead in each cycle.
DEAD_MS=1000
FLIPS_PER_CYCLE=2
FLIP_TIMEOUT_MS=60000

# The display guest with two small connectors.
GUEST_CONFIG=/tmp/vdispl-os-recovery.cfg
small_display_config "$GUEST_CONFIG"

if ! start_backend; then
    exit 1
fi
clear_console_logs
began=$(uptime_ms)
if ! create_guest -p; then
    say "xl create failed"
    stop_backend
    exit 1
fi
domid=$(xl domid "$GUEST_NAME")
xl unpause "$GUEST_NAME"
say "guest created after $(($(uptime_ms) - began)) ms (domain ${domid:-unknown})"
if ! wait_frames "$domid" "$FLIPS_PER_CYCLE"; then
    fail "first frames"
else
    say "guest flips on both connectors after $FRAMES_AFTER_MS ms"
    cycle=1
    while [ "$cycle" -le "$CYCLES" ]; do
        kill_and_restart_backend recovery "$cycle" "$domid" || break
        say "recovery cycle $cycle of $CYCLES: frames resumed $(($(uptime_ms) - KILLED_AT)) ms after the kill ($FRAMES_AFTER_MS ms after the restart)"
        cycle=$((cycle + 1))
    done
fi
end_guest shutdown || fail "xl shutdown"
# The guest's flip lines, for `cargo xtask test` to hold every backend process's frames against
# their goldens by content (each backend process counts its own seq from 0).
say "recovery: console of domain $domid begins, across backend restarts"
wind_down
say "recovery: console of domain $domid ends"
check_figures $((CYCLES + 1))
if [ -z "$failures" ]; then
    say "recovery ok ($CYCLES backend restarts, $CLOSED_AT_BASELINE connections closed with grants and heap at baseline)"
else
    say "recovery failed: $failures"
    exit 1
fi
