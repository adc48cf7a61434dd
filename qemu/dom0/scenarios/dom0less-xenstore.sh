#!/bin/sh
# Dom0less with xenstore: Xen started the guest from the device tree (`xen,enhanced`, domain 1)
# before Dom0 existed, so its store comes up late. Dom0 runs init-dom0less, which gives the
# guest its store page (on Xen up to 4.20 it allocates it and sets HVM_PARAM_STORE_PFN) and
# introduces the guest to xenstored, which notifies it. The guest (bootargs selftest=services)
# then runs its self-tests; Dom0 checks the page it grants, waits for it to be ready and asks it
# to power off through control/shutdown (xl does not manage domains it did not build).
# Ends with `rig: dom0less xenstore ok` or `rig: dom0less xenstore failed: ...`.
. /rig/lib.sh

DOMID=1
KEY_TIMEOUT_MS=60000

began=$(uptime_ms)
say "init-dom0less"
if ! init-dom0less; then
    fail "init-dom0less"
fi
say "init-dom0less done after $(($(uptime_ms) - began)) ms"
xl list

if wait_key "$DOMID" "$TEST_DIR/grant" "$KEY_TIMEOUT_MS"; then
    check_grant "$DOMID" "$KEY_VALUE" || fail "grant"
    if wait_key "$DOMID" "$TEST_DIR/state" "$KEY_TIMEOUT_MS" ready; then
        say "guest state ready"
        xenstore-write "/local/domain/$DOMID/control/shutdown" poweroff ||
            fail "xenstore-write control/shutdown"
        # The guest acknowledges by clearing the request.
        wait_key "$DOMID" control/shutdown "$KEY_TIMEOUT_MS" "" || fail "shutdown acknowledged"
    else
        fail "state ready"
    fi
else
    fail "grant key"
fi
# The guest's own lines come on Xen's console; give them a moment before Dom0 powers off.
sleep 1
if [ -z "$failures" ]; then
    say "dom0less xenstore ok"
else
    say "dom0less xenstore failed: $failures"
    exit 1
fi
