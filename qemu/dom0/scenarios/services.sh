#!/bin/sh
# Services: Dom0's side of the guest's self-tests (bootargs selftest=services), twice: the first
# guest is ended with `xl shutdown`, the second with `xl reboot` (on_reboot = "destroy").
#
# Per guest, with keys relative to its /local/domain/<domid>/:
#   1. wait (30 s) for data/vdispl-os-test/grant = "<gref> <seed>": the guest filled a page with
#      the shared test pattern of <seed> and granted it read-only to Dom0;
#   2. vdispl-grant-check <domid> <gref> <seed> maps it, compares, unmaps; then write
#      data/vdispl-os-test/grant-result = ok, mismatch (the page differs) or error (the check
#      could not be made), after which the guest ends its grant;
#   3. wait (30 s) for data/vdispl-os-test/state = ready;
#   4. xl shutdown (or xl reboot) and wait until the guest leaves `xl list` (the time is printed
#      as a figure; 30 s catch a hang), and xl must succeed, which needs the guest to
#      acknowledge the request by clearing control/shutdown (or to be gone); the shutdown
#      reason Xen logs shows that the guest ended through its own path;
#   5. print its console logs and xl's log.
# Ends with `rig: services ok (2 guests)` or `rig: services failed: ...`.
. /rig/lib.sh

GUEST_EXTRA_BOOTARGS=selftest=services
KEY_TIMEOUT_MS=30000

# run_guest N ACTION: guest number N, from xl create to gone, ended with `xl ACTION`.
run_guest() {
    local began domid=""
    say "guest $1 of 2: selftest=services, ended by xl $2"
    clear_console_logs
    began=$(uptime_ms)
    # Paused until its domain id is known, so that a guest that ends at once is still found.
    if ! create_guest -p; then
        say "xl create failed"
        fail "guest $1: xl create"
        show_console_logs
        return
    fi
    domid=$(xl domid "$GUEST_NAME")
    xl unpause "$GUEST_NAME"
    say "guest created after $(($(uptime_ms) - began)) ms (domain ${domid:-unknown})"

    if [ -z "$domid" ]; then
        fail "guest $1: xl domid"
    elif wait_key "$domid" "$TEST_DIR/grant" "$KEY_TIMEOUT_MS"; then
        check_grant "$domid" "$KEY_VALUE" || fail "guest $1: grant"
        if wait_key "$domid" "$TEST_DIR/state" "$KEY_TIMEOUT_MS" ready; then
            say "guest state ready"
            end_guest "$2" || fail "guest $1: xl $2"
        else
            fail "guest $1: state ready"
        fi
    else
        fail "guest $1: grant key"
    fi
    # Whatever happened above, the guest must be gone before the next one (same name).
    if xl list "$GUEST_NAME" >/dev/null 2>&1; then
        say "destroying guest $1"
        xl destroy "$GUEST_NAME"
    fi
    # xenconsoled writes the logs as it drains the rings; give it a moment after the domain died.
    sleep 0.2
    show_console_logs
}

run_guest 1 shutdown
run_guest 2 reboot
if [ -z "$failures" ]; then
    say "services ok (2 guests)"
else
    say "services failed: $failures"
    exit 1
fi
