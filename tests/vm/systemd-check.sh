#!/bin/sh
# Runs in the systemd VM (tests/vm/run-systemd.sh) as a oneshot unit once the system is up:
# drives the shipped steadyface.service with systemctl and prints "SD: ..." lines that
# tests/it/vm.rs checks. Under TCG a frame takes seconds: waits count frames, not time.
say() { echo "SD: $*"; }
prop() { systemctl show -p "$1" --value steadyface; }
# Landmark lines the service has written to the journal (daemon.stdout) since $1.
frames() { journalctl -u steadyface -o cat --since "$1" --no-pager 2>/dev/null | grep -c '"latency_ms"'; }
wait_for() { # SECONDS COMMAND...: until COMMAND succeeds
  n=$1; shift; i=0
  while ! "$@" && [ $i -lt "$n" ]; do sleep 1; i=$((i + 1)); done
  "$@"
}
say "boot $(cut -d' ' -f1 /proc/uptime)s"
modprobe vivid && udevadm settle
say "camera $(stat -c '%n %G %a' /dev/video0)"
t=$(date '+%Y-%m-%d %H:%M:%S')
systemctl start steadyface; say "start rc $?"
say "state $(prop ActiveState) $(prop SubState) type=$(prop Type) status=$(prop StatusText)"
wait_for 240 sh -c "[ \$(journalctl -u steadyface -o cat --since '$t' | grep -c '\"latency_ms\"') -ge 3 ]"
say "frames $(frames "$t")"
say "security $(systemd-analyze security steadyface.service --no-pager 2>&1 | grep -o 'Overall exposure level.*')"
say "devices $(prop DevicePolicy) $(prop DeviceAllow | tr '\n' ' ')"
st=/proc/$(prop MainPID)/status
say "user uid=$(awk '/^Uid:/{print $2}' "$st") groups=$(awk '/^Groups:/{$1=""; print}' "$st")"
# journald receives the daemon's records with their structured fields.
j=$(journalctl -u steadyface -o json --no-pager | grep '"SYSLOG_IDENTIFIER":"steadyface"' | grep '"PRIORITY"' | grep -m1 -v '"MESSAGE":"{')
say "journal $(echo "$j" | grep -o '"[A-Z_]*":' | tr -d '":' | sort | tr '\n' ' ')"
pid=$(prop MainPID)
t=$(date '+%Y-%m-%d %H:%M:%S')
systemctl reload steadyface; say "reload rc $?"
wait_for 120 sh -c "journalctl -u steadyface --since '$t' | grep -q 'configuration reloaded'"
# The daemon logs the reload, then rebuilds its pipeline and only then sends READY=1, which ends
# systemd's `reloading` state: under TCG that takes seconds, so wait for the state too.
wait_for 240 sh -c "[ \"\$(systemctl show -p ActiveState --value steadyface)\" = active ]"
now=$(prop MainPID)
say "after reload $(prop ActiveState) restarts=$(prop NRestarts) same-pid=$([ "$pid" = "$now" ] && echo yes || echo no) reloaded=$(journalctl -u steadyface --since "$t" | grep -c 'configuration reloaded') pids=$pid,$now"
# What the daemon and systemd said around the reload, for a failure's reader (landmark lines left out).
journalctl --since "$t" -o short-monotonic --no-pager | grep -v '"latency_ms"' | tail -n 25 | sed 's/^/SD: reload-log /'
systemctl stop steadyface
say "stop result=$(prop Result) $(journalctl -u steadyface -o cat --no-pager | grep 'stopped after' | tail -n 1)"
# Restart=on-failure: a killed daemon comes back.
systemctl start steadyface
before=$(prop NRestarts)
systemctl kill -s KILL --kill-whom=main steadyface
wait_for 120 sh -c "[ \$(systemctl show -p NRestarts --value steadyface) -gt $before ] && systemctl is-active -q steadyface"
say "killed restarts=$(prop NRestarts) (was $before) $(prop ActiveState)"
# The watchdog: a source that hangs (a decoder that writes five frames, then nothing) stops
# the pings, and systemd kills and restarts the daemon. The checks above ran with a long stall
# (a TCG frame can outlast the default); this one drops it, so the daemon's default applies.
install -m755 /usr/local/share/steadyface/ffmpeg /usr/local/bin/ffmpeg
sed -i -e 's|^  kind: v4l2|  kind: replay\n  path: /usr/local/share/steadyface/hang.mkv|' \
  -e '/^  watchdog_stall_s:/d' /etc/steadyface/steadyface.yaml
t=$(date '+%Y-%m-%d %H:%M:%S')
systemctl restart steadyface
before=$(prop NRestarts)
wait_for 360 sh -c "journalctl --since '$t' --no-pager | grep -q 'Watchdog timeout'"
wait_for 120 sh -c "[ \$(systemctl show -p NRestarts --value steadyface) -gt $before ]"
say "watchdog $(journalctl --since "$t" --no-pager | grep -o 'Watchdog timeout.*' | head -n 1) restarts=$(prop NRestarts) (was $before)"
say "stalled $(journalctl -u steadyface --since "$t" -o cat --no-pager | grep -c 'stopped producing') pings-stopped $(journalctl -u steadyface --since "$t" -o cat --no-pager | grep -c 'no longer pinging')"
systemctl stop steadyface
say "done $(cut -d' ' -f1 /proc/uptime)s"
