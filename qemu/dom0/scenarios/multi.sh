#!/bin/sh
# Four display guests at once on one backend: vdispl-os-1 .. vdispl-os-4, each with two small
# connectors (320x240 and 256x192), created one after the other and flipping at the same time.
# Each runs until it is ended. Once every guest has shown frames on both connectors, guest 4 is
# destroyed (`xl destroy`) in the middle of flipping; each of the other three must then show more
# frames on both connectors, and is then ended by `xl shutdown` and must power off with every
# grant back. Each guest's console log is printed between
# `rig: multi: console of domain <D> begins` and `... ends` lines, so that the host holds each
# guest's flips against the frames the backend captured for that domain (`dom=<D>`), and its
# round trips are reported per guest. Ends with `rig: multi ok (...)` or `rig: multi failed: ...`.
. /rig/lib.sh

GUESTS="1 2 3 4"
DESTROYED=4
GUEST_CONFIG=/tmp/vdispl-os-multi.cfg
small_display_config "$GUEST_CONFIG"

# flips_of GUEST CONNECTOR: flips the guest saw complete on its connector (its flip lines in its
# console log; flip-lines=1 prints one per flip). Flips count, not captured frames: the backend's
# PNG writers drop frames when they fall behind, a flip never goes unanswered.
flips_of() {
    local log="$CONSOLE_LOGS/guest-vdispl-os-$1.log"
    if [ -f "$log" ]; then
        grep -c "flip conn=$2 seq=" "$log"
    else
        echo 0
    fi
}

# flipping GUEST COUNT0 COUNT1: whether the guest saw COUNT0 flips on connector 0 and COUNT1 on
# connector 1.
flipping() {
    [ "$(flips_of "$1" 0)" -ge "$2" ] && [ "$(flips_of "$1" 1)" -ge "$3" ]
}

# wait_for SECONDS COMMAND...: run COMMAND every 0.2 s until it succeeds or SECONDS pass.
wait_for() {
    local began seconds=$1
    shift
    began=$(uptime_ms)
    while ! "$@"; do
        if [ $(($(uptime_ms) - began)) -ge $((seconds * 1000)) ]; then
            return 1
        fi
        sleep 0.2
    done
}

mount_frames
if ! start_backend --out "$FRAMES_DIR"; then
    exit 1
fi
domids=""
for guest in $GUESTS; do
    name="vdispl-os-$guest"
    rm -f "$CONSOLE_LOGS/guest-$name.log" "$CONSOLE_LOGS/guest-$name-vuart0.log"
    say "xl create $GUEST_CONFIG name=$name"
    if ! xl create "$GUEST_CONFIG" "name=\"$name\"" \
        "extra=\"log=info scene=animation,status frames=100000 flip-lines=1\""; then
        fail "guest $guest: xl create failed"
        continue
    fi
    domid=$(xl domid "$name")
    say "multi: guest $name is domain $domid"
    domids="$domids $domid"
    eval "domid_$guest=$domid"
done
# Every guest flipping on both connectors.
for guest in $GUESTS; do
    eval "domid=\$domid_$guest"
    if wait_for 120 flipping "$guest" 2 2; then
        say "multi: domain $domid flips on both connectors"
    else
        fail "domain $domid did not flip on both connectors"
    fi
done
eval "victim=\$domid_$DESTROYED"
before=""
for guest in $GUESTS; do
    [ "$guest" = "$DESTROYED" ] && continue
    before="$before $guest:$(flips_of "$guest" 0):$(flips_of "$guest" 1)"
done
say "multi: xl destroy vdispl-os-$DESTROYED (domain $victim) while the others flip"
xl destroy "vdispl-os-$DESTROYED" || fail "xl destroy failed"
for entry in $before; do
    guest=${entry%%:*}
    rest=${entry#*:}
    zero=${rest%%:*}
    one=${rest#*:}
    eval "domid=\$domid_$guest"
    if wait_for 120 flipping "$guest" $((zero + 1)) $((one + 1)); then
        say "multi: domain $domid flipped on after domain $victim was destroyed"
    else
        fail "domain $domid stopped flipping after domain $victim was destroyed"
    fi
done
for guest in $GUESTS; do
    [ "$guest" = "$DESTROYED" ] && continue
    GUEST_NAME="vdispl-os-$guest"
    end_guest shutdown || fail "$GUEST_NAME did not power off on xl shutdown"
done
stop_backend
sleep 0.2
for guest in $GUESTS; do
    name="vdispl-os-$guest"
    eval "domid=\$domid_$guest"
    say "multi: console of domain $domid begins"
    show_log "$CONSOLE_LOGS/guest-$name.log" guest-console
    say "multi: console of domain $domid ends"
    log="$CONSOLE_LOGS/guest-$name.log"
    if [ "$guest" != "$DESTROYED" ]; then
        if grep -q "display: all grants returned (0 in use)" "$log" &&
            grep -q "vdispl-os: powering off" "$log"; then
            say "multi: domain $domid returned every grant and powered off"
        else
            fail "domain $domid did not return every grant or power off"
        fi
    fi
done
if [ "$FRAMES_DIR" = "$FRAMES_MOUNT" ]; then
    sync
    umount "$FRAMES_MOUNT" || say "umount $FRAMES_MOUNT failed"
fi
if [ -n "$failures" ]; then
    say "multi failed: $failures"
    exit 1
fi
say "multi ok (4 guests on one backend, domain $victim destroyed while flipping)"
