# Helpers for the rig's Dom0 scripts (installed as /rig/lib.sh and sourced by /init and the
# scenarios). Lines starting with "rig: " are what `cargo xtask run/test` looks for.

GUEST_NAME=vdispl-os
GUEST_CONFIG=/etc/xen/vdispl-os.cfg
CONSOLE_LOGS=/var/log/xen/console
# The log of the `xl create` process that watches the guest (why and how it shut down).
XL_LOG=/var/log/xen/xl-vdispl-os.log

# say TEXT: a rig line on the console.
say() {
    echo "rig: $*"
}

# uptime_ms: Dom0 uptime in milliseconds.
uptime_ms() {
    awk '{ printf "%d", $1 * 1000 }' /proc/uptime
}

# cmdline_param NAME: the value of NAME=value or NAME="value with spaces" on the kernel
# command line; empty when absent.
cmdline_param() {
    printf ' %s \n' "$(cat /proc/cmdline)" |
        sed -n -e "s/.* $1=\"\([^\"]*\)\".*/\1/p;t" -e "s/.* $1=\([^ ]*\) .*/\1/p"
}

# xl_config_value KEY: the value of `KEY = value` or `KEY = "value"` in the guest's xl config.
xl_config_value() {
    sed -n -e "s/^$1[[:space:]]*=[[:space:]]*\"\([^\"]*\)\".*/\1/p;t" \
        -e "s/^$1[[:space:]]*=[[:space:]]*\([^[:space:]#]*\).*/\1/p" "$GUEST_CONFIG" | head -n 1
}

# create_guest [XL-OPTIONS]: xl create the guest config, with rig.memory=MiB and
# rig.bootargs="..." from the kernel command line overriding `memory` and `extra`. Words in
# $GUEST_EXTRA_BOOTARGS (set by a scenario) are appended to the bootargs, whichever they are.
create_guest() {
    memory=$(cmdline_param rig.memory)
    bootargs=$(cmdline_param rig.bootargs)
    if [ -n "$GUEST_EXTRA_BOOTARGS" ]; then
        bootargs="${bootargs:-$(xl_config_value extra)} $GUEST_EXTRA_BOOTARGS"
    fi
    set -- "$@" "$GUEST_CONFIG"
    if [ -n "$memory" ]; then
        set -- "$@" "memory=$memory"
    fi
    if [ -n "$bootargs" ]; then
        set -- "$@" "extra=\"$bootargs\""
    fi
    say "xl create $*"
    xl create "$@"
}

# poll_gone NAME START_MS TIMEOUT_MS: wait, silently, until domain NAME leaves `xl list`.
# Sets ELAPSED_MS to the time since START_MS (Dom0 uptime); fails if it is still there at
# START_MS + TIMEOUT_MS.
poll_gone() {
    local deadline now
    deadline=$(($2 + $3))
    while xl list "$1" >/dev/null 2>&1; do
        now=$(uptime_ms)
        if [ "$now" -ge "$deadline" ]; then
            ELAPSED_MS=$((now - $2))
            return 1
        fi
        sleep 0.05
    done
    ELAPSED_MS=$(($(uptime_ms) - $2))
}

# wait_gone NAME START_MS TIMEOUT_MS: wait until domain NAME leaves `xl list`; report the time
# since START_MS (Dom0 uptime). Destroys the domain and fails on timeout.
wait_gone() {
    if ! poll_gone "$@"; then
        say "guest $1 still running after $ELAPSED_MS ms (timeout), destroying it"
        xl destroy "$1"
        return 1
    fi
    say "guest $1 gone after $ELAPSED_MS ms"
}

# wait_key DOMID KEY TIMEOUT_MS [VALUE]: wait until the xenstore key KEY (relative to the
# domain's /local/domain/DOMID/) exists, or holds VALUE when given. Sets KEY_VALUE to what it
# holds. Fails, saying why, on timeout or when the domain is gone first (its xenstore directory
# disappears when it is destroyed).
wait_key() {
    local began deadline now
    began=$(uptime_ms)
    deadline=$((began + $3))
    while :; do
        if KEY_VALUE=$(xenstore-read "/local/domain/$1/$2" 2>/dev/null); then
            if [ $# -lt 4 ] || [ "$KEY_VALUE" = "$4" ]; then
                say "xenstore $2 = \"$KEY_VALUE\" after $(($(uptime_ms) - began)) ms"
                return 0
            fi
        fi
        if ! xenstore-read "/local/domain/$1/name" >/dev/null 2>&1; then
            say "guest (domain $1) gone before writing $2${4:+ = $4}"
            return 1
        fi
        now=$(uptime_ms)
        if [ "$now" -ge "$deadline" ]; then
            say "xenstore $2${4:+ = $4} not written within $(($3 / 1000)) s (timeout)"
            return 1
        fi
        sleep 0.1
    done
}

# end_guest ACTION: `xl ACTION` the guest (shutdown, reboot or destroy) and wait until it has
# left `xl list` and xl has returned. Passes when both happened and xl succeeded; how long it
# took is printed as a figure, never judged (`cargo xtask bench` holds teardown to its target).
# END_TIMEOUT_MS (default 30000) only catches a hang.
end_guest() {
    local began xl_pid xl_status gone=0
    : "${END_TIMEOUT_MS:=30000}"
    began=$(uptime_ms)
    say "xl $1 $GUEST_NAME (uptime $began ms)"
    # xl shutdown and xl reboot write control/shutdown, then wait (60 s at most) for the guest
    # to acknowledge it by clearing the key (a guest that is gone has too): run xl aside and
    # watch the guest itself.
    xl "$1" "$GUEST_NAME" &
    xl_pid=$!
    poll_gone "$GUEST_NAME" "$began" "$END_TIMEOUT_MS" || gone=1
    # Then xl has until the same deadline to return.
    while kill -0 "$xl_pid" 2>/dev/null && [ "$(uptime_ms)" -lt $((began + END_TIMEOUT_MS)) ]; do
        sleep 0.1
    done
    if kill -0 "$xl_pid" 2>/dev/null; then
        say "xl $1 still waits for the guest to acknowledge the request after $((END_TIMEOUT_MS / 1000)) s (hang); stopping it"
        kill "$xl_pid"
    fi
    wait "$xl_pid"
    xl_status=$?
    if [ "$gone" -ne 0 ]; then
        say "xl $1 did not end the guest: still running after $ELAPSED_MS ms (hang)"
    elif [ "$xl_status" -ne 0 ]; then
        say "xl $1 failed (exit status $xl_status); the guest left after $ELAPSED_MS ms"
    else
        say "xl $1 ended the guest ($ELAPSED_MS ms)"
        return 0
    fi
    return 1
}

# wait_released DOMID ACTION: after `xl ACTION`, wait (END_TIMEOUT_MS, default 30 s, catches a hang) until the display
# backend has let go of domain DOMID's device: it printed that the device went Closed or was
# removed.
wait_released() {
    local began
    : "${END_TIMEOUT_MS:=30000}"
    began=$(uptime_ms)
    while ! grep -q "^vdispl-backend: dom$1 dev[0-9]*: \(Closed\|removed\)" "$BACKEND_LOG"; do
        if [ "$(uptime_ms)" -ge $((began + END_TIMEOUT_MS)) ]; then
            say "the backend still holds domain $1's device after $((END_TIMEOUT_MS / 1000)) s (hang)"
            return 1
        fi
        sleep 0.1
    done
    say "the backend released domain $1's device (after xl $2)"
}

# wait_frames DOMID COUNT: wait (FLIP_TIMEOUT_MS, default 60 s, catches a hang) until the
# backend (since its last start) captured COUNT frames of DOMID on each of the two connectors.
# Sets FRAMES_AFTER_MS.
wait_frames() {
    local began now zero one
    : "${FLIP_TIMEOUT_MS:=60000}"
    began=$(uptime_ms)
    while :; do
        zero=$(grep -c "^frame conn=0 .* dom=$1 " "$BACKEND_LOG")
        one=$(grep -c "^frame conn=1 .* dom=$1 " "$BACKEND_LOG")
        if [ "$zero" -ge "$2" ] && [ "$one" -ge "$2" ]; then
            FRAMES_AFTER_MS=$(($(uptime_ms) - began))
            return 0
        fi
        if ! xl list "$GUEST_NAME" >/dev/null 2>&1; then
            say "guest (domain $1) gone"
            return 1
        fi
        now=$(uptime_ms)
        if [ $((now - began)) -ge "$FLIP_TIMEOUT_MS" ]; then
            say "domain $1: $zero and $one frames in $((FLIP_TIMEOUT_MS / 1000)) s (timeout)"
            return 1
        fi
        sleep 0.1
    done
}

# check_figures CONNECTIONS: the guest's per-connection figures against its baseline, from its
# console log: CONNECTIONS connections must have closed at baseline and none above it. Sets
# CLOSED_AT_BASELINE.
check_figures() {
    local log baseline closed above
    log="$CONSOLE_LOGS/guest-$GUEST_NAME.log"
    baseline=$(grep -o 'display: device 0 baseline: .*' "$log" | head -n 1)
    closed=$(grep -c 'display: device 0 connection [0-9]* closed: .*, at baseline' "$log")
    above=$(grep -c 'display: device 0 connection [0-9]* closed: .*, above baseline' "$log")
    say "guest figures: ${baseline:-no baseline line}; $closed connections closed at baseline, $above above"
    if [ -z "$baseline" ]; then
        fail "no baseline line"
    elif [ "$above" -ne 0 ]; then
        fail "$above connections left grants or heap in use"
    elif [ "$closed" -lt "$1" ]; then
        fail "$closed connections closed at baseline, expected $1"
    fi
    CLOSED_AT_BASELINE=$closed
}

# wind_down: the end of a display scenario's guest: destroy it if it is still there, stop the
# backend, give xenconsoled a moment to drain the rings, then print the guest's console logs.
wind_down() {
    if xl list "$GUEST_NAME" >/dev/null 2>&1; then
        xl destroy "$GUEST_NAME"
    fi
    stop_backend
    sleep 0.2
    show_console_logs
}

# show_log FILE PREFIX: print FILE with PREFIX before each line.
show_log() {
    if [ -f "$1" ]; then
        say "$1:"
        sed "s/^/$2: /" "$1"
    else
        say "$1: missing"
    fi
}

# show_console_logs: the guest's PV console and vuart logs written by xenconsoled, and xl's log
# of the guest ("Domain N has shut down, reason code R": 0 poweroff, 1 reboot, 3 crash).
show_console_logs() {
    show_log "$CONSOLE_LOGS/guest-$GUEST_NAME.log" guest-console
    show_log "$CONSOLE_LOGS/guest-$GUEST_NAME-vuart0.log" guest-vuart
    show_log "$XL_LOG" xl-log
}

# clear_console_logs: remove the console logs, so that the next guest of the same name starts
# new ones (xenconsoled appends; xl rotates its own log at each xl create).
clear_console_logs() {
    rm -f "$CONSOLE_LOGS/guest-$GUEST_NAME.log" "$CONSOLE_LOGS/guest-$GUEST_NAME-vuart0.log"
}

# The guest's xl config with the vdispl device (two connectors).
DISPLAY_CONFIG=/etc/xen/vdispl-os-display.cfg
# Where `cargo xtask` shares a host directory for the captured frames (QEMU -virtfs, mount tag
# `frames`), and the file listing the kernel modules the share needs, in load order.
FRAMES_MOUNT=/mnt/frames
FRAMES_MODULES=/etc/rig/9p-modules
# small_display_config PATH: the display guest's xl config with two small connectors
# (320x240 and 256x192, so frames come quickly), written to PATH.
small_display_config() {
    sed -e "s/^vdispl *=.*/vdispl = [ 'backend=0,be-alloc=0,connectors=DP-1:320x240;HDMI-A-1:256x192' ]/" \
        "$DISPLAY_CONFIG" >"$1"
}

# Failures a script collects for its final line; fail WHAT adds one.
failures=""
fail() {
    failures="$failures${failures:+, }$1"
}

# The display backend's output, also copied to the console.
BACKEND_LOG=/tmp/vdispl-backend.log

# mount_frames: load the 9p modules and mount the host's frames share at $FRAMES_MOUNT. Fails
# (saying why) when there is no share; FRAMES_DIR is then a directory in Dom0's memory.
mount_frames() {
    local release module
    release=$(uname -r)
    FRAMES_DIR=/tmp/frames
    mkdir -p "$FRAMES_MOUNT" "$FRAMES_DIR"
    if [ ! -f "$FRAMES_MODULES" ]; then
        say "no $FRAMES_MODULES: frames stay in Dom0"
        return 1
    fi
    while read -r module; do
        if ! grep -q "^$(echo "$module" | tr - _) " /proc/modules; then
            insmod "/lib/modules/$release/$module.ko" || say "insmod $module failed"
        fi
    done <"$FRAMES_MODULES"
    if mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 frames "$FRAMES_MOUNT"; then
        FRAMES_DIR=$FRAMES_MOUNT
        say "frames share mounted at $FRAMES_MOUNT"
    else
        say "cannot mount the frames share (9p, tag frames): frames stay in Dom0"
        return 1
    fi
}

# start_backend [OPTIONS]: start vdispl-backend in the background, its output on the console
# and in $BACKEND_LOG; sets BACKEND_PID. Fails if it exits at once.
start_backend() {
    local waited
    : >"$BACKEND_LOG"
    say "vdispl-backend $*"
    vdispl-backend "$@" 2>&1 | tee -a "$BACKEND_LOG" &
    # $! is tee's pid; the backend is the other process of the pipeline.
    waited=0
    BACKEND_PID=
    while [ -z "$BACKEND_PID" ]; do
        if [ "$waited" -ge 20 ]; then
            say "vdispl-backend did not start"
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
        BACKEND_PID=$(pidof vdispl-backend)
    done
    # It watches the backend directory at once; a device created before that is picked up
    # by the watch's first event.
}

# stop_backend: SIGTERM to the backend, then wait (30 s at most) until it has written its
# queued frames and exited.
stop_backend() {
    local waited=0
    [ -n "$BACKEND_PID" ] || return 0
    kill -TERM "$BACKEND_PID" 2>/dev/null
    while kill -0 "$BACKEND_PID" 2>/dev/null; do
        if [ "$waited" -ge 300 ]; then
            say "vdispl-backend still running after 30 s, killing it"
            kill -KILL "$BACKEND_PID"
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    BACKEND_PID=
    # Let tee copy the last lines.
    sleep 0.1
}

# The guest's xl config with the vdispl device and one vkb input device per connector, and
# where the input event scripts are (qemu/dom0/input/ on the host).
INPUT_CONFIG=/etc/xen/vdispl-os-input.cfg
INPUT_SCRIPTS=/rig/input
# The input backend's output, also copied to the console.
INPUT_BACKEND_LOG=/tmp/vkbd-backend.log

# start_input_backend SCRIPT: start vkbd-backend in the background, playing the input event
# script SCRIPT to every vkb device, its output on the console and in $INPUT_BACKEND_LOG; sets
# INPUT_BACKEND_PID. Fails if it does not start (a script it refuses makes it exit at once,
# naming the line).
start_input_backend() {
    local waited
    : >"$INPUT_BACKEND_LOG"
    say "vkbd-backend --script $1"
    vkbd-backend --script "$1" 2>&1 | tee -a "$INPUT_BACKEND_LOG" &
    # $! is tee's pid; the backend is the other process of the pipeline.
    waited=0
    INPUT_BACKEND_PID=
    while [ -z "$INPUT_BACKEND_PID" ]; do
        if [ "$waited" -ge 20 ]; then
            say "vkbd-backend did not start"
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
        INPUT_BACKEND_PID=$(pidof vkbd-backend)
    done
}

# stop_input_backend: SIGTERM to the input backend, then wait (10 s at most) until it exited.
stop_input_backend() {
    local waited=0
    [ -n "$INPUT_BACKEND_PID" ] || return 0
    kill -TERM "$INPUT_BACKEND_PID" 2>/dev/null
    while kill -0 "$INPUT_BACKEND_PID" 2>/dev/null; do
        if [ "$waited" -ge 100 ]; then
            say "vkbd-backend still running after 10 s, killing it"
            kill -KILL "$INPUT_BACKEND_PID"
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    INPUT_BACKEND_PID=
    sleep 0.1
}

# Where the guest's self-tests (selftest=services) keep their keys, under its home path.
TEST_DIR=data/vdispl-os-test

# check_grant DOMID VALUE: check the grant "<gref> <seed>" of VALUE, write grant-result.
check_grant() {
    local domid="$1" value="$2" gref="" seed="" result=error
    # Exactly two decimal numbers separated by one space, or the guest wrote something else.
    case "$value" in
    *[!0-9\ ]* | "" | " "* | *" " | *" "*" "*) ;;
    *" "*)
        gref=${value% *}
        seed=${value#* }
        ;;
    esac
    if [ -z "$gref" ]; then
        say "grant key holds \"$value\", not \"<gref> <seed>\""
    else
        say "vdispl-grant-check $domid $gref $seed"
        vdispl-grant-check "$domid" "$gref" "$seed"
        case $? in
        0) result=ok ;;
        1) result=mismatch ;;
        esac
    fi
    say "xenstore-write $TEST_DIR/grant-result $result"
    xenstore-write "/local/domain/$domid/$TEST_DIR/grant-result" "$result" ||
        say "xenstore-write $TEST_DIR/grant-result failed"
    [ "$result" = ok ]
}

# kill_and_restart_backend LABEL CYCLE DOMID: one recovery cycle: SIGKILL to the display backend,
# DEAD_MS ms without one, a new one started, then FLIPS_PER_CYCLE more frames of domain DOMID.
# Says `LABEL cycle CYCLE of CYCLES: backend killed (SIGKILL)`; sets KILLED_AT (uptime ms of the
# kill). Fails, naming what did not happen, if the backend does not start or frames do not
# resume.
kill_and_restart_backend() {
    kill -KILL "$BACKEND_PID"
    KILLED_AT=$(uptime_ms)
    say "$1 cycle $2 of $CYCLES: backend killed (SIGKILL)"
    sleep $((DEAD_MS / 1000)).$(printf '%03d' $((DEAD_MS % 1000)))
    BACKEND_PID=
    if ! start_backend; then
        fail "cycle $2: backend restart"
        return 1
    fi
    if ! wait_frames "$3" "$FLIPS_PER_CYCLE"; then
        fail "cycle $2: frames did not resume"
        return 1
    fi
}
