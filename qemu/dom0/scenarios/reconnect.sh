#!/bin/sh
# Reconnect: one backend process serves a display guest through $CYCLES reconnections in a row.
# vdispl-backend runs with `--fault state-back,conn=1,count=$CYCLES,after=2`: after two flips
# of connector 1 it lets go of the device (unmapping every buffer and ring) and goes from
# Connected back to InitWait; the guest tears the device down, returns its grants and connects
# again, and the same backend maps everything anew. Checked:
#   1. the backend goes Connected $CYCLES + 1 times and both connectors flip after the last
#      reconnection (progress is awaited with a hang deadline of 60 s without a new connection);
#   2. every DBUF_CREATE was mapped: no `rejected DBUF_CREATE` and no `cannot be mapped` line;
#   3. after xl shutdown and the backend's release of the device, the backend process holds no
#      gntdev mapping (/proc/<pid>/maps);
#   4. the guest's grants and heap in use were back at its baseline after every connection.
# Ends with `rig: reconnect ok (...)` or `rig: reconnect failed: ...`.
. /rig/lib.sh

CYCLES=${RECONNECT_CYCLES:-50}
# A hang: no new connection for this long.
STALL_MS=60000

GUEST_CONFIG=/tmp/vdispl-os-reconnect.cfg
small_display_config "$GUEST_CONFIG"

# connections: how many times the backend went Connected so far.
connections() {
    grep -c "^vdispl-backend: dom[0-9]* dev[0-9]*: Connected" "$BACKEND_LOG"
}

# wait_connections DOMID COUNT: wait until the backend went Connected COUNT times; fails when no
# new connection comes for STALL_MS or the guest is gone.
wait_connections() {
    local seen now last progress
    last=$(connections)
    progress=$(uptime_ms)
    while :; do
        seen=$(connections)
        if [ "$seen" -ge "$2" ]; then
            return 0
        fi
        now=$(uptime_ms)
        if [ "$seen" -ne "$last" ]; then
            if [ $((seen / 10)) -ne $((last / 10)) ]; then
                say "reconnect progress: $seen of $2 connections"
            fi
            last=$seen
            progress=$now
        fi
        if ! xl list "$GUEST_NAME" >/dev/null 2>&1; then
            say "guest (domain $1) gone after $seen connections"
            return 1
        fi
        if [ $((now - progress)) -ge "$STALL_MS" ]; then
            say "no new connection for $((STALL_MS / 1000)) s after $seen of $2 (hang)"
            return 1
        fi
        sleep 0.2
    done
}

if ! start_backend --fault "state-back,conn=1,count=$CYCLES,after=2"; then
    exit 1
fi
clear_console_logs
if ! create_guest -p; then
    say "xl create failed"
    stop_backend
    exit 1
fi
domid=$(xl domid "$GUEST_NAME")
xl unpause "$GUEST_NAME"
began=$(uptime_ms)
if wait_connections "$domid" $((CYCLES + 1)); then
    say "reconnect: $((CYCLES + 1)) connections after $(($(uptime_ms) - began)) ms"
    # Both connectors flip on the last connection: frames of each after its Connected line.
    last_frames() {
        awk -v conn="$1" '/^vdispl-backend: dom[0-9]* dev[0-9]*: Connected/ { n = 0 }
            $0 ~ "^frame conn=" conn " " { n++ } END { print n + 0 }' "$BACKEND_LOG"
    }
    waited=0
    while [ "$(last_frames 0)" -lt 2 ] || [ "$(last_frames 1)" -lt 2 ]; do
        if [ "$waited" -ge 600 ]; then
            fail "no frames on both connectors after the last reconnection"
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
else
    fail "$(connections) of $((CYCLES + 1)) connections"
fi
rejected=$(grep -c -e "rejected DBUF_CREATE" -e "cannot be mapped" "$BACKEND_LOG")
faults=$(grep -c "conn[0-9]*: fault state-back:" "$BACKEND_LOG")
say "reconnect: $faults state-back faults, $rejected buffers not mapped"
if [ "$rejected" -ne 0 ]; then
    grep -e "rejected DBUF_CREATE" -e "cannot be mapped" "$BACKEND_LOG" | head -n 5
    fail "$rejected buffers not mapped"
fi
# While connected the backend's mappings show in its maps: the check after the guest is gone
# can see a leak.
held=$(grep -c /dev/xen/gntdev "/proc/$BACKEND_PID/maps" 2>/dev/null)
say "reconnect: the backend holds ${held:-unknown} gntdev mappings while connected"
if [ "${held:-0}" -eq 0 ]; then
    fail "no gntdev mapping seen while connected"
fi
end_guest shutdown || fail "xl shutdown"
wait_released "$domid" shutdown || fail "backend release"
mapped=$(grep -c /dev/xen/gntdev "/proc/$BACKEND_PID/maps" 2>/dev/null)
say "reconnect: the backend holds ${mapped:-unknown} gntdev mappings after the guest is gone"
if [ "${mapped:-1}" -ne 0 ]; then
    fail "${mapped:-unknown} gntdev mappings left"
fi
wind_down
check_figures $((CYCLES + 1))
if [ -z "$failures" ]; then
    say "reconnect ok ($CYCLES reconnections by one backend, every buffer mapped, no gntdev mapping left, $CLOSED_AT_BASELINE connections closed with grants and heap at baseline)"
else
    say "reconnect failed: $failures"
    exit 1
fi
