#!/bin/sh
# Display at 3840x2160 (qemu/xl/vdispl-os-4k.cfg: one connector, memory 128, max_grant_frames 32):
# the guest grows its grant table to the 32 frames two 4K buffers take, and every frame is held
# against its golden. Otherwise the display scenario.
DISPLAY_GUEST_CONFIG=/etc/xen/vdispl-os-4k.cfg
. /rig/scenarios/display.sh
