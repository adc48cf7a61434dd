#!/bin/sh
# Bench: Dom0's side of `cargo xtask bench`. Every figure is timed in Dom0 (uptime in ms) and
# printed as a `rig: bench ...` line the host turns into the table.
#  1. boot to first frame: the display guest (one 1920x1080 connector) from `xl create`
#     returning until its first flip is acknowledged (its `flip conn=0 seq=0` console line);
#     the last of these runs flips every scene and gives the guest's per-connector summary.
#  2. the peer: a Debian Linux DomU (Dom0's kernel, a busybox initramfs whose /init prints a
#     marker and powers off) with the same memory, from `xl create` returning to the marker.
#  3. teardown: a display guest ended by `xl shutdown`, another by `xl destroy`, each while
#     flipping, from the xl command to the guest gone from `xl list` (end_guest in lib.sh);
#  4. the smallest memory= with which the guest flips 1920x1080 double-buffered: bisection,
#     each try a short run that must flip its frames and return every grant;
#  5. capture off and on: the guest flipping the animation scene on one connector at 1280x720,
#     then 1920x1080, against the backend without `--out` (answers only) and with it (every
#     frame copied and written as a PNG to the share); the guest's summary line of each run
#     (flips/s, flip round trip p50/p99) becomes a `rig: bench: capture ...` line.
#  6. touch to flip: the paint guest (vdispl-os-input.cfg cut to DP-1 and its vkb device)
#     against the backend without `--out` and vkbd-backend playing /rig/input/bench-touch.script
#     (100 touches 50 ms apart, then Escape); the guest times each touch from reaching the app
#     to the flip of the first frame drawn with it, and its line (`input: conn=0 touch to flip
#     ...`) becomes a `rig: bench: touch-to-flip ...` line.
#  7. display buffers allocated by the guest (be-alloc=0) and by the backend (be-alloc=1): the
#     guest flipping the animation scene on one 1920x1080 connector against the backend
#     without `--out`, each from a fresh backend: xl create returned to the first flip
#     acknowledged, the guest's flips/s, and the backend's CPU time per flip on its ring thread
#     and in all its threads (its `vdispl-backend: cpu: ...` line as it stops) become a
#     `rig: bench: buffers ...` line.
# Settings come from bench.conf on the share (written by `cargo xtask bench`): RUNS (boots of
# each kind), MEMORY (MiB of both kinds' boots), FRAMES (per scene in the flipping run), LOW and
# HIGH (the bisection's range), CAPTURE_FRAMES (frames of each capture run).
. /rig/lib.sh

GUEST_CONFIG=/etc/xen/vdispl-os-bench.cfg
# Files the host put on the share: the Linux kernel and its initramfs.
PEER_NAME=linux-peer
PEER_DIR=/tmp/peer
PEER_CONFIG=$PEER_DIR/linux-peer.cfg


# time_create LOG TEXT TIMEOUT_MS CONFIG [OVERRIDE...]: xl create CONFIG (its output on stderr),
# then wait until LOG holds TEXT; sets ELAPSED_MS to the milliseconds from xl create returning
# to TEXT appearing (vdispl-bench-time: the clock starts as xl exits and LOG is read every
# millisecond, by one process) and START_MS to Dom0's uptime when xl returned. Status: 0 found,
# 1 timeout, 3 xl create failed, 2 other errors.
time_create() {
    local log=$1 text=$2 timeout=$3 status
    shift 3
    ELAPSED_MS=$(vdispl-bench-time "$log" "$text" "$timeout" -- xl create "$@")
    status=$?
    START_MS=$(($(uptime_ms) - ${ELAPSED_MS:-$timeout}))
    return $status
}

# guest_run MEMORY BOOTARGS: one display guest; sets FIRST_MS (xl create returned to the first
# flip acknowledged, empty if none). Leaves its console log in place.
guest_run() {
    local status
    FIRST_MS=
    clear_console_logs
    say "xl create $GUEST_CONFIG memory=$1 extra=\"$2\""
    time_create "$CONSOLE_LOGS/guest-$GUEST_NAME.log" "flip conn=0 seq=0" 120000 \
        "$GUEST_CONFIG" "memory=$1" "extra=\"$2\""
    status=$?
    if [ "$status" -eq 3 ]; then
        say "bench: xl create failed (memory=$1)"
        return 1
    fi
    if [ "$status" -eq 0 ]; then
        FIRST_MS=$ELAPSED_MS
    fi
    wait_gone "$GUEST_NAME" "$START_MS" 300000
}

mount_frames || { say "bench: no share with the Linux peer"; exit 1; }
if [ -f "$FRAMES_DIR/bench.conf" ]; then
    . "$FRAMES_DIR/bench.conf"
fi
: "${RUNS:=3}" "${MEMORY:=64}" "${FRAMES:=8}" "${LOW:=16}" "${HIGH:=64}" "${CAPTURE_FRAMES:=60}"
if ! start_backend; then
    exit 1
fi

# 1. The guest, first frame.
run=1
while [ "$run" -le "$RUNS" ]; do
    if [ "$run" -eq "$RUNS" ]; then
        bootargs="log=info scene=bars,primitives,animation,status frames=$FRAMES"
    else
        bootargs="log=info scene=bars frames=1"
    fi
    guest_run "$MEMORY" "$bootargs"
    if [ -n "$FIRST_MS" ]; then
        say "bench: guest first-frame run=$run memory=$MEMORY ms=$FIRST_MS"
    else
        say "bench: guest first-frame run=$run memory=$MEMORY failed"
    fi
    run=$((run + 1))
done
# The last run's summary lines (display: summary ...) and the rest of its log.
sleep 0.2
show_console_logs

# 2. Teardown while flipping.
for action in shutdown destroy; do
    clear_console_logs
    say "xl create $GUEST_CONFIG memory=$MEMORY (ended by xl $action)"
    if time_create "$CONSOLE_LOGS/guest-$GUEST_NAME.log" "flip conn=0 seq=3" 120000 \
        "$GUEST_CONFIG" "memory=$MEMORY" "extra=\"log=info scene=bars frames=100000\"" &&
        end_guest "$action"; then
        say "bench: teardown action=$action ms=$ELAPSED_MS"
    else
        say "bench: teardown action=$action failed"
        xl destroy "$GUEST_NAME" 2>/dev/null
    fi
done

# 3. The Linux peer.
mkdir -p "$PEER_DIR"
cp "$FRAMES_DIR/linux-peer/Image" "$FRAMES_DIR/linux-peer/initrd.cpio" "$PEER_DIR/"
cat >"$PEER_CONFIG" <<EOF
name = "$PEER_NAME"
kernel = "$PEER_DIR/Image"
ramdisk = "$PEER_DIR/initrd.cpio"
memory = $MEMORY
vcpus = 1
extra = "console=hvc0 quiet rdinit=/init"
on_poweroff = "destroy"
on_crash = "destroy"
on_reboot = "destroy"
EOF
run=1
while [ "$run" -le "$RUNS" ]; do
    rm -f "$CONSOLE_LOGS/guest-$PEER_NAME.log"
    say "xl create $PEER_CONFIG"
    time_create "$CONSOLE_LOGS/guest-$PEER_NAME.log" "vdispl-bench: linux /init" 120000 \
        "$PEER_CONFIG"
    case $? in
    0)
        say "bench: linux init run=$run memory=$MEMORY ms=$ELAPSED_MS"
        wait_gone "$PEER_NAME" "$START_MS" 60000
        ;;
    3)
        say "bench: linux init run=$run memory=$MEMORY failed (xl create)"
        ;;
    *)
        say "bench: linux init run=$run memory=$MEMORY failed"
        show_log "$CONSOLE_LOGS/guest-$PEER_NAME.log" peer-console
        wait_gone "$PEER_NAME" "$START_MS" 60000
        ;;
    esac
    run=$((run + 1))
done
rm -f "$PEER_DIR/Image" "$PEER_DIR/initrd.cpio"

# 4. The smallest memory, by bisection: LOW fails or is assumed to, HIGH passes or is assumed
# to.
fits() {
    guest_run "$1" "log=info scene=bars frames=2"
    local log="$CONSOLE_LOGS/guest-$GUEST_NAME.log"
    if grep -q -F "flip conn=0 seq=1" "$log" 2>/dev/null &&
        grep -q -F "display: all grants returned" "$log" 2>/dev/null; then
        say "bench: memory try mib=$1 ok"
        return 0
    fi
    say "bench: memory try mib=$1 failed"
    grep -e "error" -e "ERROR" -e "WARN" -e "panic" "$log" 2>/dev/null | head -n 5 | sed 's/^/guest-console: /'
    return 1
}
low=$((LOW - 1))
high=$HIGH
if fits "$LOW"; then
    high=$LOW
else
    low=$LOW
    while [ $((high - low)) -gt 1 ]; do
        mid=$(((low + high) / 2))
        if fits "$mid"; then
            high=$mid
        else
            low=$mid
        fi
    done
fi
say "bench: memory smallest mib=$high (tried $LOW..$HIGH)"

# 5. Capture off and on.
stop_backend
CAPTURE_CONFIG=/tmp/vdispl-os-capture.cfg
for resolution in 1280x720 1920x1080; do
    sed -e "s/^vdispl *=.*/vdispl = [ 'backend=0,be-alloc=0,connectors=DP-1:$resolution' ]/" \
        "$GUEST_CONFIG" >"$CAPTURE_CONFIG"
    for capture in off on; do
        if [ "$capture" = on ]; then
            mkdir -p "$FRAMES_DIR/capture-bench"
            start_backend --out "$FRAMES_DIR/capture-bench" || continue
        else
            start_backend || continue
        fi
        clear_console_logs
        say "xl create $CAPTURE_CONFIG memory=$MEMORY (capture $capture)"
        start=$(uptime_ms)
        if xl create "$CAPTURE_CONFIG" "memory=$MEMORY" \
            "extra=\"log=info scene=animation frames=$CAPTURE_FRAMES\""; then
            wait_gone "$GUEST_NAME" "$start" 300000
        fi
        sleep 0.2
        summary=$(grep -o 'display: summary conn=0 .*' "$CONSOLE_LOGS/guest-$GUEST_NAME.log" | head -n 1)
        fps=$(echo "$summary" | sed -n 's/.* fps=\([0-9.]*\).*/\1/p')
        p50=$(echo "$summary" | sed -n 's/.* rtt_p50_us=\([0-9]*\).*/\1/p')
        p99=$(echo "$summary" | sed -n 's/.* rtt_p99_us=\([0-9]*\).*/\1/p')
        if [ -n "$fps" ] && [ -n "$p50" ] && [ -n "$p99" ]; then
            say "bench: capture res=$resolution capture=$capture fps=$fps p50_us=$p50 p99_us=$p99"
        else
            say "bench: capture res=$resolution capture=$capture failed"
        fi
        stop_backend
        rm -rf "$FRAMES_DIR/capture-bench"
    done
done
# 6. Touch to flip.
TOUCH_CONFIG=/tmp/vdispl-os-touch.cfg
sed -e "s/^vdispl *=.*/vdispl = [ 'backend=0,be-alloc=0,connectors=DP-1:1280x720' ]/" \
    -e "/unique-id=HDMI-A-1/d" -e "s/^\(vkb = \[ .*'\),\$/\1 ]/" \
    "$INPUT_CONFIG" >"$TOUCH_CONFIG"
if start_backend; then
    if start_input_backend "$INPUT_SCRIPTS/bench-touch.script"; then
        clear_console_logs
        say "xl create $TOUCH_CONFIG (touch to flip)"
        start=$(uptime_ms)
        # Escape ends the guest: far more frames than the script lasts, few flip lines.
        if xl create "$TOUCH_CONFIG" "extra=\"log=info app=paint frames=100000 flip-lines=1000\""; then
            wait_gone "$GUEST_NAME" "$start" 300000
        fi
        stop_input_backend
        sleep 0.2
        line=$(grep -o 'input: conn=0 touch to flip .*' "$CONSOLE_LOGS/guest-$GUEST_NAME.log" | head -n 1)
        p50=$(echo "$line" | sed -n 's/.* p50_us=\([0-9]*\).*/\1/p')
        p99=$(echo "$line" | sed -n 's/.* p99_us=\([0-9]*\).*/\1/p')
        touches=$(echo "$line" | sed -n 's/.* over \([0-9]*\) touches.*/\1/p')
        if [ -n "$p50" ] && [ -n "$p99" ] && [ -n "$touches" ]; then
            say "bench: touch-to-flip conn=0 p50_us=$p50 p99_us=$p99 touches=$touches"
        else
            say "bench: touch-to-flip conn=0 failed"
            show_console_logs
        fi
    else
        say "bench: touch-to-flip conn=0 failed (vkbd-backend)"
    fi
    stop_backend
else
    say "bench: touch-to-flip conn=0 failed (vdispl-backend)"
fi
# 7. Buffers allocated by the guest and by the backend.
BUFFERS_CONFIG=/tmp/vdispl-os-buffers.cfg
for be_alloc in 0 1; do
    sed -e "s/^vdispl *=.*/vdispl = [ 'backend=0,be-alloc=$be_alloc,connectors=DP-1:1920x1080' ]/" \
        "$GUEST_CONFIG" >"$BUFFERS_CONFIG"
    if ! start_backend; then
        say "bench: buffers be-alloc=$be_alloc failed (vdispl-backend)"
        continue
    fi
    clear_console_logs
    say "xl create $BUFFERS_CONFIG memory=$MEMORY (be-alloc=$be_alloc)"
    first=
    time_create "$CONSOLE_LOGS/guest-$GUEST_NAME.log" "flip conn=0 seq=0" 120000 \
        "$BUFFERS_CONFIG" "memory=$MEMORY" "extra=\"log=info scene=animation frames=$CAPTURE_FRAMES\""
    case $? in
    0) first=$ELAPSED_MS ;;
    3) START_MS= ;;
    esac
    if [ -n "$START_MS" ]; then
        wait_gone "$GUEST_NAME" "$START_MS" 300000
    fi
    stop_backend
    sleep 0.2
    summary=$(grep -o 'display: summary conn=0 .*' "$CONSOLE_LOGS/guest-$GUEST_NAME.log" | head -n 1)
    fps=$(echo "$summary" | sed -n 's/.* fps=\([0-9.]*\).*/\1/p')
    cpu=$(grep -o 'vdispl-backend: cpu: .*' "$BACKEND_LOG" | tail -n 1)
    ring=$(echo "$cpu" | sed -n 's/.*ring thread [0-9]* ms, \([0-9]*\) us a flip.*/\1/p')
    all=$(echo "$cpu" | sed -n 's/.*all threads [0-9]* ms, \([0-9]*\) us a flip.*/\1/p')
    if [ -n "$first" ] && [ -n "$fps" ] && [ -n "$ring" ] && [ -n "$all" ]; then
        say "bench: buffers be-alloc=$be_alloc res=1920x1080 first_frame_ms=$first fps=$fps ring_us_per_flip=$ring all_us_per_flip=$all"
    else
        say "bench: buffers be-alloc=$be_alloc res=1920x1080 failed"
        show_console_logs
    fi
done
say "bench: done"
