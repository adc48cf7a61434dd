#!/bin/sh
# Input: the paint demo driven by a script. Mount the host's frames share, start the display
# backend and the input backend (vkbd-backend, playing /rig/input/paint.script to each vkb
# device), xl create the guest of vdispl-os-input.cfg (two connectors, a vkb device on each,
# app=paint), wait (300 s at most) until the script's Escape has stopped it and it has powered
# itself off, stop both backends, then print the guest's console logs. The input-gicv3
# scenario checks the guest's input lines, the backend's script lines, and each paint frame
# against a golden drawn from the same script. INPUT_SCRIPT, when set, is another script.
. /rig/lib.sh

GUEST_CONFIG=$INPUT_CONFIG
SCRIPT=${INPUT_SCRIPT:-$INPUT_SCRIPTS/paint.script}

mount_frames
if ! start_backend --out "$FRAMES_DIR"; then
    exit 1
fi
if ! start_input_backend "$SCRIPT"; then
    stop_backend
    exit 1
fi
clear_console_logs
start=$(uptime_ms)
if ! create_guest; then
    say "xl create failed"
    stop_input_backend
    stop_backend
    show_console_logs
    exit 1
fi
say "guest created after $(($(uptime_ms) - start)) ms (domain $(xl domid "$GUEST_NAME" 2>/dev/null))"
wait_gone "$GUEST_NAME" "$start" 300000
rc=$?
stop_input_backend
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
