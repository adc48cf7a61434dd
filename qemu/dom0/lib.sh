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

# create_guest [XL-OPTIONS]: xl create the guest config, with rig.memory=MiB and
# rig.bootargs="..." from the kernel command line overriding `memory` and `extra`.
create_guest() {
    memory=$(cmdline_param rig.memory)
    bootargs=$(cmdline_param rig.bootargs)
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

# wait_gone NAME START_MS TIMEOUT_MS: wait until domain NAME leaves `xl list`; report the time
# since START_MS (Dom0 uptime). Destroys the domain and fails on timeout.
wait_gone() {
    deadline=$(($2 + $3))
    while xl list "$1" >/dev/null 2>&1; do
        now=$(uptime_ms)
        if [ "$now" -ge "$deadline" ]; then
            say "guest $1 still running after $((now - $2)) ms (timeout), destroying it"
            xl destroy "$1"
            return 1
        fi
        sleep 0.05
    done
    say "guest $1 gone after $(($(uptime_ms) - $2)) ms"
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
