# Runs inside the VM (busybox sh), from /work: the daemon captures from vivid's /dev/video0,
# the camera is unbound mid-run (as if unplugged) and bound again; the daemon must report the
# loss, keep running, and resume. The host test reads the VM: lines and the daemon's log.
export RUST_LOG=info
./steadyface run --config vm.yaml > /tmp/out.jsonl 2> /tmp/log.txt &
pid=$!
frames() { wc -l < /tmp/out.jsonl; }
wait_frames() { # N SECONDS
  i=0; while [ "$(frames)" -lt "$1" ] && [ $i -lt "$2" ]; do sleep 1; i=$((i+1)); done
}
wait_frames 5 120
before=$(frames); echo "VM: frames before unplug: $before"
echo vivid.0 > /sys/bus/platform/drivers/vivid/unbind && echo "VM: unplugged"
sleep 4
during=$(frames); echo "VM: frames while unplugged: $during"
echo vivid.0 > /sys/bus/platform/drivers/vivid/bind && echo "VM: plugged back"
wait_frames $((during + 5)) 120
after=$(frames); echo "VM: frames after replug: $after"
kill -TERM $pid; wait $pid; echo "VM: daemon exit status $?"
echo "VM: first frame: $(head -n 1 /tmp/out.jsonl | cut -c1-160)"
sed 's/^/VM-LOG: /' /tmp/log.txt
