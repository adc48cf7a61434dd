#!/bin/sh
# Linux input peer: Linux's own xen-kbdfront against vkbd-backend. Mount the host's share
# (which holds the DomU's kernel, Debian's stock arm64 kernel, and its initramfs, whose /init
# is evdev-reader), xl create the DomU of /etc/xen/linux-input.cfg (two vkb devices), wait
# until the reader has opened every input device xen-kbdfront created and said
# `evdev: ready`, and only then start vkbd-backend playing /rig/input/linux-input.script, so
# that no event comes before the reader can read it. The reader powers the DomU off once
# KEY_ESC is released on both keyboards; wait until it is gone and the backend has let go of
# both devices, stop the backend, then print the DomU's console (the reader's lines and the
# kernel's). `cargo xtask test` (xtask/src/linux_input.rs) holds the reader's lines against
# the evdev reports xen-kbdfront must give for the script, and the console against errors.
. /rig/lib.sh

GUEST_NAME=linux-input
GUEST_CONFIG=/etc/xen/linux-input.cfg
XL_LOG=/var/log/xen/xl-linux-input.log
SCRIPT=$INPUT_SCRIPTS/linux-input.script
# Hang deadlines: the reader ready (a Linux boot under emulation), the DomU gone, the backend
# letting go of a device.
READY_TIMEOUT_MS=180000
GONE_TIMEOUT_MS=300000
RELEASE_TIMEOUT_MS=30000

# wait_ready TIMEOUT_MS: wait until the DomU's console log says the reader is ready; fails
# when the DomU is gone first or at the deadline.
wait_ready() {
    local began log
    began=$(uptime_ms)
    log="$CONSOLE_LOGS/guest-$GUEST_NAME.log"
    while ! grep -q "^evdev: ready: " "$log" 2>/dev/null; do
        if ! xl list "$GUEST_NAME" >/dev/null 2>&1; then
            say "linux-input: the DomU is gone and the reader never said it was ready"
            return 1
        fi
        if [ "$(uptime_ms)" -ge $((began + $1)) ]; then
            say "linux-input: the reader not ready after $(($1 / 1000)) s (hang)"
            return 1
        fi
        sleep 0.1
    done
    say "linux-input: the reader is ready $(($(uptime_ms) - began)) ms after xl create"
}

# wait_devices_released DOMID: wait until the backend has said that both of the domain's
# devices are Closed or removed.
wait_devices_released() {
    local began device
    began=$(uptime_ms)
    for device in 0 1; do
        while ! grep -q "^vkbd-backend: dom$1 dev$device: \(Closed\|removed\)" "$INPUT_BACKEND_LOG"; do
            if [ "$(uptime_ms)" -ge $((began + RELEASE_TIMEOUT_MS)) ]; then
                say "linux-input: the backend still holds dom$1 dev$device after $((RELEASE_TIMEOUT_MS / 1000)) s (hang)"
                return 1
            fi
            sleep 0.1
        done
    done
    say "linux-input: the backend released both devices"
}

if ! mount_frames; then
    say "linux-input failed: no share with the DomU's kernel and initramfs"
    exit 1
fi
for file in linux-input.Image linux-input.cpio; do
    if [ ! -f "$FRAMES_DIR/$file" ]; then
        say "linux-input failed: no $file in the share (cargo xtask puts it there)"
        exit 1
    fi
done
clear_console_logs
start=$(uptime_ms)
if ! xl create "$GUEST_CONFIG"; then
    say "linux-input failed: xl create"
    show_console_logs
    exit 1
fi
domid=$(xl domid "$GUEST_NAME")
say "linux-input: domain $domid created after $(($(uptime_ms) - start)) ms"
if ! wait_ready "$READY_TIMEOUT_MS"; then
    fail "the reader was not ready"
    xl destroy "$GUEST_NAME" 2>/dev/null
elif ! start_input_backend "$SCRIPT"; then
    fail "vkbd-backend did not start"
    xl destroy "$GUEST_NAME" 2>/dev/null
else
    wait_gone "$GUEST_NAME" "$start" "$GONE_TIMEOUT_MS" || fail "the DomU did not power off"
    wait_devices_released "$domid" || fail "the backend kept a device"
fi
stop_input_backend
# xenconsoled writes the logs as it drains the rings; give it a moment after the domain died.
sleep 0.2
show_console_logs
sync
umount "$FRAMES_MOUNT" || say "umount $FRAMES_MOUNT failed"
if [ -n "$failures" ]; then
    say "linux-input failed: $failures"
    exit 1
fi
say "linux-input ok"
