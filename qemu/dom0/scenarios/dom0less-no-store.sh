#!/bin/sh
# Dom0less with xenstore that never comes: Xen started the guest from the device tree
# (`xen,enhanced`, domain 1) and Dom0 does not run init-dom0less, so the guest's store never
# comes up. The guest (bootargs xenstore-wait=N) says so once after N seconds and powers off;
# Dom0 waits until Xen has the domain shut down.
# Ends with `rig: dom0less guest shut down without a store` or `rig: dom0less no-store failed`.
. /rig/lib.sh

DOMID=1
TIMEOUT_MS=60000

began=$(uptime_ms)
while :; do
    state=$(xl list | awk -v id="$DOMID" '$2 == id { print $5 }')
    case "$state" in
    *s*)
        say "dom0less guest shut down without a store ($(($(uptime_ms) - began)) ms after Dom0's script started)"
        exit 0
        ;;
    esac
    if [ "$(uptime_ms)" -ge $((began + TIMEOUT_MS)) ]; then
        say "dom0less no-store failed: domain $DOMID still running (state '$state') after $((TIMEOUT_MS / 1000)) s"
        xl list
        exit 1
    fi
    sleep 0.2
done
