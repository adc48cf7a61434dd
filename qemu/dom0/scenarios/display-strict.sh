#!/bin/sh
# Display against `vdispl-backend --strict`, which behaves as the xen-troops DRM backend does:
# no `versions` node (GET_EDID is answered all the same), SET_CONFIG only for a host mode, 32 bpp
# buffers only (DBUF_CREATE at 16 bpp gets -EINVAL), EVT_PG_FLIP at the next 60 Hz vblank after
# the answer, and Closing, unmap, Closed, InitWait on a close. Otherwise the display scenario:
# the guest (asked for RGB565 on connector 1) falls back to XRGB8888 there, and every frame is
# held against a golden of the depth it was drawn at.
DISPLAY_BACKEND_OPTIONS=--strict
. /rig/scenarios/display.sh
