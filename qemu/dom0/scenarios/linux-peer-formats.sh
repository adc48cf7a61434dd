#!/bin/sh
# The Linux peer (linux-peer.sh) once per pixel format xen-drm-front offers besides XRGB8888
# (which linux-peer.sh shows): RGB565, RGB888, ARGB8888, XRGB4444, ARGB4444, XRGB1555,
# ARGB1555 and YUYV, each on one 320x240 connector; every captured frame is held against the
# pattern in that format, converted to RGB as the backend converts it.
PEER_CASES="rg16 RG16 0 DP-1:320x240
rg24 RG24 0 DP-1:320x240
ar24 AR24 0 DP-1:320x240
xr12 XR12 0 DP-1:320x240
ar12 AR12 0 DP-1:320x240
xr15 XR15 0 DP-1:320x240
ar15 AR15 0 DP-1:320x240
yuyv YUYV 0 DP-1:320x240"
. /rig/scenarios/linux-peer.sh
