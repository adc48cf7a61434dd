#!/bin/sh
# be-alloc: the display guest with `be-alloc = 1` (qemu/xl/vdispl-os-be-alloc.cfg): the backend
# allocates every display buffer (gntalloc), grants its pages to the guest and lists them in the
# guest's page directory; the guest maps them and draws there. Two phases, one backend binary:
#   1. golden: the backend with --out, the guest on two connectors (1280x720, 800x600) shows
#      the demo scenes (bootargs `scene=bars,primitives,animation,status frames=2`) and powers
#      itself off; its console goes between `rig: be-alloc: console of domain <D> begins` and
#      `... ends` lines, so that `cargo xtask test` holds that domain's frames against their
#      goldens; once the guest is gone the backend must map nothing (gntalloc, gntdev).
#   2. recovery: a guest on two small connectors (320x240, 256x192) animates; the backend
#      (frame lines only) is killed (SIGKILL) and restarted $CYCLES times, frames resume each
#      time (`cargo xtask test` holds every backend process's frames against the goldens of the
#      guest's flip lines, by their CRC-32, from the console section `... begins, across backend
#      restarts`); then xl shutdown, and the guest's figures after each connection (grants, heap and
#      the backend's pages it maps) must be back at its baseline, and the last backend must
#      hold no gntalloc or gntdev mapping (its /proc/<pid>/maps) once the guest is gone (a
#      buffer mapping is let go of in one step: munmap, then IOCTL_GNTALLOC_DEALLOC_GREF).
# Ends with `rig: be-alloc ok (...)` or `rig: be-alloc failed: ...`.
. /rig/lib.sh

CYCLES=${BE_ALLOC_CYCLES:-3}
DEAD_MS=1000
FLIPS_PER_CYCLE=2
FLIP_TIMEOUT_MS=60000
BE_ALLOC_CONFIG=/etc/xen/vdispl-os-be-alloc.cfg

# held_words: the backend's last `... held now)` line (a buffer a copy still read when the
# device closed is let go of by that copy, without a line: the mappings say the rest).
held_words() {
    local last
    last=$(grep 'backend-allocated pages let go of' "$BACKEND_LOG" | tail -n 1)
    say "be-alloc $1: the backend's last word on its pages: ${last:-none}"
}

# no_mappings WHAT: the running backend maps nothing of gntalloc or gntdev (its
# /proc/<pid>/maps), within 5 s (a copy still reading a buffer lets go of it when it stops).
no_mappings() {
    local waited=0 mapped
    while :; do
        mapped=$(grep -c -e /dev/xen/gntalloc -e /dev/xen/gntdev "/proc/$BACKEND_PID/maps" 2>/dev/null)
        if [ "${mapped:-1}" -eq 0 ] || [ "$waited" -ge 50 ]; then
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    say "be-alloc $1: the backend holds ${mapped:-unknown} gntalloc and gntdev mappings after the guest is gone"
    [ "${mapped:-1}" -eq 0 ]
}

# Phase 1: golden.
mount_frames
if ! start_backend --out "$FRAMES_DIR"; then
    exit 1
fi
GUEST_CONFIG=$BE_ALLOC_CONFIG
GUEST_EXTRA_BOOTARGS="scene=bars,primitives,animation,status frames=2"
clear_console_logs
start=$(uptime_ms)
if ! create_guest -p; then
    fail "golden: xl create"
else
    domid=$(xl domid "$GUEST_NAME")
    xl unpause "$GUEST_NAME"
    say "be-alloc golden: guest is domain $domid"
    if wait_gone "$GUEST_NAME" "$start" 300000; then
        say "be-alloc golden: guest powered off"
    else
        fail "golden: the guest did not power off"
    fi
    wait_released "$domid" poweroff || fail "golden: the backend kept the device"
    grep -q "pages allocated and granted to domain $domid (be-alloc)" "$BACKEND_LOG" ||
        fail "golden: the backend allocated no buffer"
    no_mappings golden || fail "golden: mappings left"
    held_words golden
    sleep 0.2
    say "be-alloc: console of domain $domid begins"
    show_log "$CONSOLE_LOGS/guest-$GUEST_NAME.log" guest-console
    say "be-alloc: console of domain $domid ends"
fi
stop_backend
if [ "$FRAMES_DIR" = "$FRAMES_MOUNT" ]; then
    say "frames written: $(ls "$FRAMES_DIR" | grep -c '\.png$') PNG files"
    sync
    umount "$FRAMES_MOUNT" || say "umount $FRAMES_MOUNT failed"
fi

# Phase 2: recovery.
GUEST_CONFIG=/tmp/vdispl-os-be-alloc-small.cfg
sed -e "s/^vdispl *=.*/vdispl = [ 'backend=0,be-alloc=1,connectors=DP-1:320x240;HDMI-A-1:256x192' ]/" \
    "$BE_ALLOC_CONFIG" >"$GUEST_CONFIG"
GUEST_EXTRA_BOOTARGS="scene=animation,status frames=100000"
if ! start_backend; then
    exit 1
fi
clear_console_logs
if ! create_guest -p; then
    fail "recovery: xl create"
    stop_backend
else
    domid=$(xl domid "$GUEST_NAME")
    xl unpause "$GUEST_NAME"
    say "be-alloc recovery: guest is domain $domid"
    if ! wait_frames "$domid" "$FLIPS_PER_CYCLE"; then
        fail "recovery: first frames"
    else
        cycle=1
        while [ "$cycle" -le "$CYCLES" ]; do
            kill_and_restart_backend "be-alloc recovery" "$cycle" "$domid" || break
            grep -q "pages allocated and granted to domain $domid (be-alloc)" "$BACKEND_LOG" ||
                fail "cycle $cycle: the backend allocated no buffer"
            say "be-alloc recovery cycle $cycle of $CYCLES: frames resumed $(($(uptime_ms) - KILLED_AT)) ms after the kill"
            cycle=$((cycle + 1))
        done
    fi
    # While connected the last backend maps its own buffers (gntalloc) and the guest's rings
    # (gntdev): the check after the guest is gone can see a leak.
    held=$(grep -c -e /dev/xen/gntalloc "/proc/$BACKEND_PID/maps" 2>/dev/null)
    say "be-alloc recovery: the backend holds ${held:-unknown} gntalloc mappings while connected"
    [ "${held:-0}" -gt 0 ] || fail "recovery: no gntalloc mapping seen while connected"
    end_guest shutdown || fail "xl shutdown"
    wait_released "$domid" shutdown || fail "recovery: the backend kept the device"
    no_mappings recovery || fail "recovery: mappings left"
    held_words recovery
    # The guest's flip lines, for `cargo xtask test` to hold this domain's frames against their
    # goldens by content (each backend process counts its own seq from 0).
    say "be-alloc: console of domain $domid begins, across backend restarts"
    wind_down
    say "be-alloc: console of domain $domid ends"
    check_figures $((CYCLES + 1))
fi
if [ -z "$failures" ]; then
    say "be-alloc ok (golden phase, $CYCLES backend restarts, $CLOSED_AT_BASELINE connections closed with grants, heap and backend pages at baseline)"
else
    say "be-alloc failed: $failures"
    exit 1
fi
