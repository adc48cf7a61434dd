#!/bin/sh
# Dump the device tree libxl builds for the guest: create it paused with
# LIBXL_DEBUG_DUMP_DTB, print the DTB in base64 between "rig: dtb-begin" and "rig: dtb-end",
# then destroy the guest. `cargo xtask dump-dtbs` turns the output into test fixtures.
. /rig/lib.sh

export LIBXL_DEBUG_DUMP_DTB=/tmp/guest.dtb
if ! create_guest -p; then
    say "xl create failed"
    exit 1
fi
unset LIBXL_DEBUG_DUMP_DTB
if [ ! -s /tmp/guest.dtb ]; then
    say "libxl wrote no /tmp/guest.dtb"
    xl destroy "$GUEST_NAME"
    exit 1
fi
say "dtb-begin $(wc -c </tmp/guest.dtb) bytes"
base64 /tmp/guest.dtb
say "dtb-end"
xl destroy "$GUEST_NAME"
