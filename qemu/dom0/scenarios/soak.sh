#!/bin/sh
# Soak: the display guest flips many frames (the count comes with its bootargs from
# `cargo xtask soak`) on two small connectors, without pause, until it has shown them all and
# powered itself off. The backend's output goes to its log only and the guest prints one flip
# line in many (`flip-lines=`), so the serial console stays quiet; a progress line every 30 s
# counts the frames captured. At the end: the guest's display lines (baseline, sampled flips with
# their heap and grants in use, summaries, the figures after its connection closed) and the
# backend's frame counts. `cargo xtask soak` reads them and gives the verdict.
. /rig/lib.sh

GUEST_CONFIG=/tmp/vdispl-os-soak.cfg
small_display_config "$GUEST_CONFIG"

captured() {
    grep -c "^frame conn=$1 " "$BACKEND_LOG"
}

: >"$BACKEND_LOG"
say "vdispl-backend (output in $BACKEND_LOG only)"
vdispl-backend >"$BACKEND_LOG" 2>&1 &
BACKEND_PID=$!
clear_console_logs
start=$(uptime_ms)
if ! create_guest; then
    say "xl create failed"
    stop_backend
    exit 1
fi
(
    while sleep 30; do
        say "soak progress: $(captured 0) and $(captured 1) frames captured after $((($(uptime_ms) - start) / 1000)) s"
    done
) &
progress=$!
wait_gone "$GUEST_NAME" "$start" "${SOAK_TIMEOUT_MS:-3600000}"
rc=$?
kill "$progress" 2>/dev/null
stop_backend
sleep 0.2
grep -E "display:|flip conn=|vdispl-os:" "$CONSOLE_LOGS/guest-$GUEST_NAME.log" | sed 's/^/guest-console: /'
say "soak: the backend captured $(captured 0) and $(captured 1) frames"
exit $rc
