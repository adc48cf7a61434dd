#!/bin/sh
# Damaged configuration: the display guest (two connectors, DP-1 1280x720 and HDMI-A-1 800x600)
# created paused, one or two of the nodes xl wrote for its vdispl device overwritten or removed
# from Dom0, then unpaused; per case the guest's and the backend's lines are checked, and the
# guest must power off by itself with every grant back:
#   resolution  device/vdispl/0/1/resolution = "0x0": connector 1 is not driven, named with
#               its node and value; connector 0 shows its frames (held against their goldens);
#               the backend refuses connector 1 alone.
#   too-large   device/vdispl/0/0/resolution = "100000x100000": connector 0 is not driven;
#               connector 1 shows its frames, its buffers created through connector 0's ring.
#   backend-id  device/vdispl/0/backend-id = "30000": the device is not driven, the line names
#               the node; no reconnection loop.
#   gap         device/vdispl/0/0 removed while 1 stays: the device is not driven, the line names
#               the missing connector; the backend refuses the device naming it.
# Ends with `rig: config ok (4 cases)` or `rig: config failed: ...`.
. /rig/lib.sh

GUEST_CONFIG=$DISPLAY_CONFIG
CASES=${CONFIG_CASES:-"resolution too-large backend-id gap"}
# A hang deadline per guest.
CASE_TIMEOUT_MS=180000

# damage CASE DEVICE: change the nodes of CASE under DEVICE (the frontend's directory).
damage() {
    case "$1" in
    resolution) xenstore-write "$2/1/resolution" "0x0" ;;
    too-large) xenstore-write "$2/0/resolution" "100000x100000" ;;
    backend-id) xenstore-write "$2/backend-id" "30000" ;;
    gap) xenstore-rm "$2/0" ;;
    esac
}

# guest_says CASE: the guest line CASE must print (a fixed string).
guest_says() {
    case "$1" in
    resolution) echo 'display conn=1 (HDMI-A-1): configuration: device/vdispl/0/1/resolution holds "0x0" (a width or height of 0); this connector is not driven' ;;
    too-large) echo 'display conn=0 (DP-1): configuration: device/vdispl/0/0/resolution holds "100000x100000" (beyond 8192x8192); this connector is not driven' ;;
    backend-id) echo 'display device 0: configuration: device/vdispl/0/backend-id names domain 30000' ;;
    gap) echo 'display device 0: device configuration: device/vdispl/0/0 is missing but device/vdispl/0/1 is listed' ;;
    esac
}

# shown CASE: the connector whose frames CASE must show, if any.
shown() {
    case "$1" in
    resolution) echo 0 ;;
    too-large) echo 1 ;;
    esac
}

# backend_says CASE: what the backend's line about CASE must contain (grep -E), if anything.
backend_says() {
    case "$1" in
    resolution) echo 'connector 1 refused: .*/device/vdispl/0/1/resolution holds "0x0"' ;;
    too-large) echo 'connector 0 refused: .*/device/vdispl/0/0/resolution holds "100000x100000"' ;;
    gap) echo '/device/vdispl/0/0 is missing' ;;
    esac
}

# guest_has TEXT: whether the guest's console logs hold the fixed string TEXT.
guest_has() {
    cat "$CONSOLE_LOGS/guest-$GUEST_NAME.log" "$CONSOLE_LOGS/guest-$GUEST_NAME-vuart0.log" \
        2>/dev/null | grep -qF -- "$1"
}

run_case() {
    local name=$1 domid start lines_before connector expected
    clear_console_logs
    lines_before=$(wc -l <"$BACKEND_LOG")
    if ! create_guest -p; then
        fail "$name: xl create failed"
        return
    fi
    domid=$(xl domid "$GUEST_NAME")
    damage "$name" "/local/domain/$domid/device/vdispl/0"
    say "config $name: domain $domid damaged, unpausing"
    start=$(uptime_ms)
    xl unpause "$GUEST_NAME"
    if ! wait_gone "$GUEST_NAME" "$start" "$CASE_TIMEOUT_MS"; then
        fail "$name: the guest did not power off by itself"
    fi
    sleep 0.2
    show_console_logs
    expected=$(guest_says "$name")
    if guest_has "$expected"; then
        say "config $name: guest said: $expected"
    else
        fail "$name: the guest did not say: $expected"
    fi
    if guest_has "; reconnecting"; then
        fail "$name: the guest reconnected"
    fi
    if ! guest_has "display: all grants returned (0 in use)" &&
        ! guest_has "closed: 0 grants in use"; then
        fail "$name: grants not all returned"
    fi
    connector=$(shown "$name")
    if [ -n "$connector" ]; then
        if guest_has "display: summary conn=$connector " &&
            ! guest_has "display: summary conn=$connector 0x0"; then
            say "config $name: connector $connector showed its frames"
        else
            fail "$name: connector $connector showed no frame"
        fi
    fi
    expected=$(backend_says "$name")
    if [ -n "$expected" ]; then
        if tail -n +"$((lines_before + 1))" "$BACKEND_LOG" | grep -qE -- "$expected"; then
            say "config $name: the backend named it"
        else
            fail "$name: the backend did not say: $expected"
        fi
    fi
}

mount_frames
if ! start_backend --out "$FRAMES_DIR"; then
    exit 1
fi
count=0
for name in $CASES; do
    run_case "$name"
    count=$((count + 1))
done
stop_backend
if [ "$FRAMES_DIR" = "$FRAMES_MOUNT" ]; then
    sync
    umount "$FRAMES_MOUNT" || say "umount $FRAMES_MOUNT failed"
fi
if [ -n "$failures" ]; then
    say "config failed: $failures"
    exit 1
fi
say "config ok ($count cases)"
