#!/bin/sh
# Hostile backend: one display guest (two small connectors, many frames) against the display
# backend started with each `--fault` mode in turn. Per mode:
#   1. start `vdispl-backend --fault MODE,conn=1,after=$FAULT_AFTER` (connector 1 is hit once,
#      after two good flips; state-back is per device); the guest connects (again) to it;
#   2. wait for the backend's `fault MODE` line, then for the guest's line naming connector 1
#      (or, for state-back, the device) and the fault: an error, or for garbage-event the
#      warning that the unknown event was ignored;
#   3. count connector 0's frames between the fault and the device's next close (its frames
#      go on while connector 1 is stopped; not for state-back, which stops the device);
#   4. wait until connector 1 flips again ($RESUMED_FRAMES frames): on its own ring for the
#      modes that leave the ring usable (status, wrong-id, silent: the guest sets connector 1
#      up again after 2 s; garbage-event: the flip is released and flipping goes on), or once
#      the device is connected again for those that do not (rsp-prod breaks the ring,
#      state-back leaves the device);
#   5. stop the backend (SIGTERM: Closed), so the guest reconnects to the next one.
# Then xl shutdown, the guest's console logs, and no connection above its grants and heap
# baseline. Ends with `rig: hostile ok (...)` or `rig: hostile failed: ...`.
. /rig/lib.sh

MODES=${HOSTILE_MODES:-"status wrong-id rsp-prod garbage-event silent state-back"}
RESUMED_FRAMES=2
# Good flips on connector 1 before its fault; the backend's frame seq counts them from 0, so
# connector 1's frames from seq $FAULT_AFTER on came after the fault.
FAULT_AFTER=2
# A hang deadline per step: the silent mode's error comes after the guest's 30 s stuck-ring limit.
STEP_TIMEOUT_MS=120000

GUEST_CONFIG=/tmp/vdispl-os-hostile.cfg
small_display_config "$GUEST_CONFIG"

# guest_lines PATTERN: the guest's console lines (both consoles) matching PATTERN (grep -E).
guest_lines() {
    cat "$CONSOLE_LOGS/guest-$GUEST_NAME.log" "$CONSOLE_LOGS/guest-$GUEST_NAME-vuart0.log" \
        2>/dev/null | grep -E "$1"
}

# error_pattern MODE: what the guest's error line for MODE must match.
error_pattern() {
    case "$1" in
    status) echo 'display conn=1 .*PG_FLIP failed with status -5' ;;
    wrong-id) echo 'display conn=1 .*PG_FLIP not completed.*wrong id' ;;
    rsp-prod) echo 'display conn=1 .*rsp_prod [0-9]+ is past the ring' ;;
    garbage-event) echo 'display conn=1 .*ignored event id [0-9]+ of unknown type 0xee' ;;
    silent) echo 'display conn=1 .*PG_FLIP not completed.*never answered' ;;
    state-back) echo 'display device 0: the backend went to InitWait' ;;
    esac
}

# reconnects MODE: whether the guest reconnects the device for MODE (a broken ring, or a
# backend that left); for the others only connector 1 is set up again, on its own ring.
reconnects() {
    case "$1" in
    rsp-prod | state-back) return 0 ;;
    *) return 1 ;;
    esac
}

# until_ms TIMEOUT COMMAND...: run COMMAND every 0.1 s until it succeeds (0) or TIMEOUT ms pass.
until_ms() {
    local began limit
    limit=$1
    shift
    began=$(uptime_ms)
    while ! "$@"; do
        if [ $(($(uptime_ms) - began)) -ge "$limit" ]; then
            return 1
        fi
        if ! xl list "$GUEST_NAME" >/dev/null 2>&1; then
            say "guest gone"
            return 1
        fi
        sleep 0.1
    done
}

fault_seen() {
    grep -q "fault $MODE:" "$BACKEND_LOG"
}
guest_error_seen() {
    [ "$(guest_lines "$(error_pattern "$MODE")" | wc -l)" -gt "$ERRORS_BEFORE" ]
}
# Connector 1 flipped $RESUMED_FRAMES frames after the fault (once the device was connected again,
# for the modes that reconnect it). The backend's frame seq counts connector 1's flips from 0 over
# every connection, the faulted flip not among them, so seqs $FAULT_AFTER and up came after the
# fault. A flip shows as a frame line, or as a `not captured` line when the backend's PNG writers
# are behind (one by one, or as a range); frame lines are printed as they are written, so some
# from before the fault come after its line: the highest seq seen decides.
resumed() {
    local up=0
    reconnects "$MODE" || up=1
    [ "$(awk -v mode="fault $MODE:" -v up="$up" '
        function seen(text, from, stop) {
            text = substr($0, index($0, from) + length(from))
            sub(stop ".*", "", text)
            if (text + 0 > high) high = text + 0
        }
        index($0, mode) { on = 1; next }
        on && /vdispl-backend: .*: Connected/ { up = 1 }
        !on || !up { next }
        /^frame conn=1 / { seen($0, " seq=", " ") }
        / conn1: frame seq [0-9]+ not captured/ { seen($0, "frame seq ", " ") }
        / conn1: frames seq [0-9]+ to [0-9]+:/ { seen($0, " to ", ":") }
        END { print high + 0 }' "$BACKEND_LOG")" -ge $((FAULT_AFTER + RESUMED_FRAMES - 1)) ]
}

first=1
passed=0
for MODE in $MODES; do
    # Counted before the backend starts: its fault can hit, and the guest report it, before
    # start_backend returns (reading the guest's long console logs takes a while).
    ERRORS_BEFORE=$(guest_lines "$(error_pattern "$MODE")" | wc -l)
    if ! start_backend --fault "$MODE,conn=1,after=$FAULT_AFTER"; then
        fail "$MODE: backend start"
        break
    fi
    if [ "$first" -eq 1 ]; then
        first=0
        clear_console_logs
        ERRORS_BEFORE=0
        if ! create_guest; then
            say "xl create failed"
            fail "xl create"
            break
        fi
    fi
    began=$(uptime_ms)
    if ! until_ms "$STEP_TIMEOUT_MS" fault_seen; then
        say "hostile $MODE: the backend's fault never came"
        fail "$MODE: the backend's fault never came"
        stop_backend
        continue
    fi
    faulted=$(uptime_ms)
    if ! until_ms "$STEP_TIMEOUT_MS" guest_error_seen; then
        say "hostile $MODE: no guest error line matching '$(error_pattern "$MODE")'"
        fail "$MODE: no guest error line matching '$(error_pattern "$MODE")'"
        stop_backend
        continue
    fi
    error_line=$(guest_lines "$(error_pattern "$MODE")" | tail -n 1)
    if ! until_ms "$STEP_TIMEOUT_MS" resumed; then
        say "hostile $MODE: connector 1 did not flip again"
        fail "$MODE: connector 1 did not flip again"
        stop_backend
        continue
    fi
    resumed_ms=$(($(uptime_ms) - faulted))
    # Connector 0's frames while connector 1 was stopped: from the fault until the device
    # was next closed.
    others=$(awk -v mode="fault $MODE:" 'index($0, mode) { on = 1; next }
        on && /vdispl-backend: .*(Closed|InitWait again)/ { exit }
        on && /^frame conn=0 / { n++ } END { print n + 0 }' "$BACKEND_LOG")
    if [ "$MODE" != state-back ] && [ "$others" -lt 1 ]; then
        fail "$MODE: connector 0 stopped flipping"
    else
        passed=$((passed + 1))
    fi
    say "hostile $MODE: guest said \"${error_line#*display }\"; connector 0 flipped $others frames meanwhile; connector 1 flipped again ${resumed_ms} ms after the fault"
    stop_backend
done
end_guest shutdown || fail "xl shutdown"
wind_down
above=$(guest_lines 'display: device 0 connection [0-9]* closed: .*above baseline' | wc -l)
closed=$(guest_lines 'display: device 0 connection [0-9]* closed: .*at baseline' | wc -l)
say "guest figures: $closed connections closed at baseline, $above above"
[ "$above" -eq 0 ] || fail "$above connections left grants or heap in use"
count=$(echo $MODES | wc -w)
if [ -z "$failures" ]; then
    say "hostile ok ($passed of $count fault modes: error named, other connector flipping, recovered; $closed connections at baseline)"
else
    say "hostile failed: $failures"
    exit 1
fi
