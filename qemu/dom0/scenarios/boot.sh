#!/bin/sh
# Boot: xl create the guest, wait (30 s at most) until it powers itself off and leaves
# `xl list`, then print its console logs.
. /rig/lib.sh

start=$(uptime_ms)
if ! create_guest; then
    say "xl create failed"
    show_console_logs
    exit 1
fi
say "guest created after $(($(uptime_ms) - start)) ms"
wait_gone "$GUEST_NAME" "$start" 30000
rc=$?
# xenconsoled writes the logs as it drains the rings; give it a moment after the domain died.
sleep 0.2
show_console_logs
exit $rc
