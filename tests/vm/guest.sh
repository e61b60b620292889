# Runs inside the VM (busybox sh), from /work. The daemon captures from vivid's /dev/video0;
# the camera is unbound mid-run (as if unplugged) and bound again; the daemon must report the
# loss, keep running, and resume. The host test reads the VM: lines and the daemon's log.
# Under TCG one frame takes seconds, so each step waits for a number of frames, not a time.
export RUST_LOG=info
# Lines in FILE (0 while it does not exist yet).
count() { n=$(wc -l < "$1" 2>/dev/null); echo "${n:-0}"; }
frames() { count /tmp/out.jsonl; }
wait_frames() { # N SECONDS
  i=0; while [ "$(frames)" -lt "$1" ] && [ $i -lt "$2" ]; do sleep 1; i=$((i+1)); done
}
: > /tmp/out.jsonl
./steadyface run --config vm.yaml > /tmp/out.jsonl 2> /tmp/log.txt &
pid=$!
wait_frames 3 120
before=$(frames); echo "VM: frames before unplug: $before"
echo vivid.0 > /sys/bus/platform/drivers/vivid/unbind && echo "VM: unplugged"
sleep 4
during=$(frames); echo "VM: frames while unplugged: $during"
echo vivid.0 > /sys/bus/platform/drivers/vivid/bind && echo "VM: plugged back"
wait_frames $((during + 3)) 120
after=$(frames); echo "VM: frames after replug: $after"
kill -TERM $pid; wait $pid; echo "VM: daemon exit status $?"
echo "VM: first frame: $(head -n 1 /tmp/out.jsonl | cut -c1-160)"
sed 's/^/VM-LOG: /' /tmp/log.txt
# The other uncompressed formats vivid offers, each through the whole pipeline for a few frames.
for fmt in nv12 grey; do
  : > /tmp/$fmt.jsonl
  ./steadyface run --config vm.yaml --set source.format=$fmt > /tmp/$fmt.jsonl 2> /tmp/$fmt.log &
  pid=$!
  i=0; while [ "$(count /tmp/$fmt.jsonl)" -lt 1 ] && [ $i -lt 120 ]; do sleep 1; i=$((i+1)); done
  kill -TERM $pid; wait $pid; rc=$?
  echo "VM: format $fmt: $(count /tmp/$fmt.jsonl) frames, exit $rc; $(grep -o 'camera: /dev/video0.*' /tmp/$fmt.log | head -n 1)"
done
