#!/bin/sh
# Linux input peer: Linux's own xen-kbdfront against vkbd-backend. Mount the host's share
# (which holds the DomU's kernel, Debian's stock arm64 kernel, and its initramfs, whose /init
# is evdev-reader), start vkbd-backend playing /rig/input/linux-input.script, xl create the
# DomU of /etc/xen/linux-input.cfg (two vkb devices) paused, wait until the backend has put
# both devices at InitWait, then stop the backend (SIGSTOP) and unpause the DomU. The frontend
# connects at InitWait (so Linux's boot does not wait 30 s for the devices), the reader opens
# every input device xen-kbdfront created and says `evdev: ready`, and only then does the
# backend go on (SIGCONT): it connects both devices and plays the script, so no event comes
# before the reader can read it. The reader powers the DomU off once KEY_ESC is released on
# both keyboards; wait until it is gone and the backend has let go of both devices, stop the
# backend, then print the DomU's console (the reader's lines and the kernel's).
# `cargo xtask test` (xtask/src/linux_input.rs) holds the reader's lines against the evdev
# reports xen-kbdfront must give for the script, and the console against errors.
. /rig/lib.sh

GUEST_NAME=linux-input
GUEST_CONFIG=/etc/xen/linux-input.cfg
XL_LOG=/var/log/xen/xl-linux-input.log
SCRIPT=$INPUT_SCRIPTS/linux-input.script
# Hang deadlines: the backend at InitWait, the reader ready (a Linux boot under emulation),
# the DomU gone, the backend letting go of a device.
INITWAIT_TIMEOUT_MS=30000
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
    say "linux-input: the reader is ready $(($(uptime_ms) - began)) ms after xl unpause"
}

# wait_backend_lines DOMID WHAT TIMEOUT_MS: wait until the backend has printed
# `dom<DOMID> dev<N>: <WHAT>` for both devices.
wait_backend_lines() {
    local began device
    began=$(uptime_ms)
    for device in 0 1; do
        while ! grep -q "^vkbd-backend: dom$1 dev$device: $2" "$INPUT_BACKEND_LOG"; do
            if [ "$(uptime_ms)" -ge $((began + $3)) ]; then
                say "linux-input: no \"dom$1 dev$device: $2\" from the backend after $(($3 / 1000)) s (hang)"
                return 1
            fi
            sleep 0.1
        done
    done
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
if ! start_input_backend "$SCRIPT"; then
    say "linux-input failed: vkbd-backend did not start"
    exit 1
fi
clear_console_logs
start=$(uptime_ms)
if ! xl create -p "$GUEST_CONFIG"; then
    say "linux-input failed: xl create"
    stop_input_backend
    show_console_logs
    exit 1
fi
domid=$(xl domid "$GUEST_NAME")
say "linux-input: domain $domid created (paused) after $(($(uptime_ms) - start)) ms"
if ! wait_backend_lines "$domid" InitWait "$INITWAIT_TIMEOUT_MS"; then
    fail "the backend did not offer both devices"
    xl destroy "$GUEST_NAME" 2>/dev/null
else
    kill -STOP "$INPUT_BACKEND_PID"
    say "linux-input: both devices at InitWait; vkbd-backend held (SIGSTOP) until the reader is ready"
    xl unpause "$GUEST_NAME"
    if ! wait_ready "$READY_TIMEOUT_MS"; then
        fail "the reader was not ready"
        kill -CONT "$INPUT_BACKEND_PID"
        xl destroy "$GUEST_NAME" 2>/dev/null
    else
        kill -CONT "$INPUT_BACKEND_PID"
        say "linux-input: vkbd-backend goes on (SIGCONT)"
        wait_gone "$GUEST_NAME" "$start" "$GONE_TIMEOUT_MS" || fail "the DomU did not power off"
        wait_devices_released "$domid" || fail "the backend kept a device"
    fi
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
