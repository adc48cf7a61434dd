#!/bin/sh
# Linux peer: Linux's own xen-drm-front against vdispl-backend. Mount the host's frames share,
# start the backend, then run one Linux DomU (qemu/xl/linux-peer.cfg, its /init kms-client)
# per case, each created paused (to learn its domain id), unpaused, and waited for until it
# powers itself off; then wait until the backend has let go of its device and print its
# console logs. Every case is framed by `rig: linux-peer case <name> start: ...` (format,
# be-alloc, connectors, frames), `... domain <D>` and `... end` lines, which
# `cargo xtask test` (xtask/src/peer_frames.rs) reads with the backend's frame lines and PNG
# files. The be-alloc case has the backend allocate the buffers (gntalloc) that Linux maps and
# draws into. PEER_CASES, when set (linux-peer-formats.sh), replaces the cases: one per line,
# `<name> <FOURCC> <be-alloc> <connectors>`.
. /rig/lib.sh

GUEST_NAME=linux-peer
GUEST_CONFIG=/etc/xen/linux-peer.cfg
XL_LOG=/var/log/xen/xl-linux-peer.log
PEER_IMAGE=/guest/linux-peer.Image
# Page flips per connector and case.
PEER_FRAMES=8
# The DomU powers itself off when its client is done; this only catches a hang.
PEER_TIMEOUT_MS=180000
: "${PEER_CASES:=one XR24 0 DP-1:320x240
two XR24 0 DP-1:320x240;HDMI-A-1:256x192
be-alloc XR24 1 DP-1:320x240;HDMI-A-1:256x192}"

# run_case NAME FOURCC BE_ALLOC CONNECTORS: one DomU.
run_case() {
    local start domid
    say "linux-peer case $1 start: format $2 be-alloc $3 connectors $4 frames $PEER_FRAMES"
    clear_console_logs
    start=$(uptime_ms)
    if ! xl create -p "$GUEST_CONFIG" \
        "extra=\"console=hvc0 kms.format=$2 kms.frames=$PEER_FRAMES\"" \
        "vdispl=[ 'backend=0,be-alloc=$3,connectors=$4' ]"; then
        fail "$1: xl create failed"
        show_console_logs
        say "linux-peer case $1 end"
        return
    fi
    domid=$(xl domid "$GUEST_NAME")
    say "linux-peer case $1 domain $domid"
    xl unpause "$GUEST_NAME"
    wait_gone "$GUEST_NAME" "$start" "$PEER_TIMEOUT_MS" || fail "$1: the DomU did not power off"
    wait_released "$domid" poweroff || fail "$1: the backend kept the device"
    # xenconsoled writes the logs as it drains the rings; give it a moment after the domain died.
    sleep 0.2
    show_console_logs
    say "linux-peer case $1 end"
}

if [ ! -f "$PEER_IMAGE" ]; then
    say "linux-peer failed: no $PEER_IMAGE in Dom0 (cargo xtask builds it for the linux-peer scenarios)"
    exit 1
fi
mount_frames
if ! start_backend --out "$FRAMES_DIR"; then
    exit 1
fi
cases=0
while read -r name fourcc be_alloc connectors; do
    [ -n "$name" ] || continue
    run_case "$name" "$fourcc" "$be_alloc" "$connectors"
    cases=$((cases + 1))
done <<CASES
$PEER_CASES
CASES
stop_backend
if [ "$FRAMES_DIR" = "$FRAMES_MOUNT" ]; then
    say "frames written: $(ls "$FRAMES_DIR" | grep -c '\.png$') PNG files"
    sync
    umount "$FRAMES_MOUNT" || say "umount $FRAMES_MOUNT failed"
fi
if [ -n "$failures" ]; then
    say "linux-peer failed: $failures"
    exit 1
fi
say "linux-peer ok ($cases cases)"
