#!/bin/sh
# Display: the whole demo. Mount the host's frames share, start the display backend, xl create
# the guest with its vdispl device (two connectors), wait (300 s at most) until it has shown
# its scenes and powered itself off, stop the backend (it finishes writing the PNG files), then
# print the guest's console logs. `cargo xtask run` and the display-gicv* scenarios read the
# backend's `frame` lines, the guest's flip and summary lines, and the PNG files.
# DISPLAY_BACKEND_OPTIONS, when set (display-strict.sh), go to the backend; DISPLAY_GUEST_CONFIG,
# when set (display-4k.sh), is the guest's xl config instead of the display one.
. /rig/lib.sh

GUEST_CONFIG=${DISPLAY_GUEST_CONFIG:-$DISPLAY_CONFIG}

mount_frames
# shellcheck disable=SC2086 # the options are words
if ! start_backend ${DISPLAY_BACKEND_OPTIONS:-} --out "$FRAMES_DIR"; then
    exit 1
fi
clear_console_logs
start=$(uptime_ms)
if ! create_guest; then
    say "xl create failed"
    stop_backend
    show_console_logs
    exit 1
fi
say "guest created after $(($(uptime_ms) - start)) ms (domain $(xl domid "$GUEST_NAME" 2>/dev/null))"
wait_gone "$GUEST_NAME" "$start" 300000
rc=$?
stop_backend
# xenconsoled writes the logs as it drains the rings; give it a moment after the domain died.
sleep 0.2
show_console_logs
if [ "$FRAMES_DIR" = "$FRAMES_MOUNT" ]; then
    say "frames written: $(ls "$FRAMES_DIR" | grep -c '\.png$') PNG files"
    sync
    umount "$FRAMES_MOUNT" || say "umount $FRAMES_MOUNT failed"
fi
exit $rc
