#!/usr/bin/env bash
# tests/vm/run-vm.sh PAYLOAD_DIR: boot Debian's stock kernel under QEMU (TCG: no KVM needed),
# load the `vivid` virtual camera driver and its dependencies from a busybox initramfs, copy
# PAYLOAD_DIR to /work in the guest, run /work/guest.sh there, and exit with its status
# (125: the guest never reported one). Every binary in PAYLOAD_DIR gets its shared libraries.
# Adapted from ../shared/recipes/v4l-vm.sh.
#
#   STEADYFACE_VM_CACHE  kernel cache (default ~/.cache/steadyface/vm)
#   VM_TIMEOUT           seconds before QEMU is killed (default 700: on a loaded 2-core host
#                        a TCG frame can take a minute)
set -euo pipefail
PAYLOAD=$(readlink -f "${1:?usage: $0 PAYLOAD_DIR}")
C=${STEADYFACE_VM_CACHE:-$HOME/.cache/steadyface/vm}; mkdir -p "$C"
for tool in qemu-system-x86_64 busybox depmod strip; do
  command -v "$tool" >/dev/null || { echo "run-vm: $tool missing (scripts/setup.sh installs it)" >&2; exit 125; }
done
. "$(dirname "$0")/kernel.sh"   # sets K (unpacked kernel package) and KVER
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; R=$W/root
mkdir -p "$R"/{bin,dev,proc,sys,tmp,mods}; cp /bin/busybox "$R/bin/"   # busybox-static
# vivid and the modules it needs, in load order.
for ko in $(modprobe -d "$K" -S "$KVER" --show-depends vivid | awk '$1=="insmod"{print $2}'); do
  cp "$ko" "$R/mods/"; basename "$ko" >> "$R/mods/order"
done
cp -a "$PAYLOAD" "$R/work"
for f in "$R"/work/*; do
  if [ -x "$f" ] && ldd "$f" >/dev/null 2>&1; then
    for lib in $(ldd "$f" | grep -o '/[^ ]*'); do cp --parents -L "$lib" "$R"; done
  fi
done
cat > "$R/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc p /proc; mount -t sysfs s /sys; mount -t devtmpfs d /dev; mount -t tmpfs t /tmp
while read -r m; do insmod /mods/$m || echo "VM: insmod $m failed"; done < /mods/order
i=0; while [ ! -e /dev/video0 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
echo "VM: ready at $(cut -d' ' -f1 /proc/uptime)s: $(ls /dev/video* | tr '\n' ' ')"
cd /work && sh ./guest.sh; echo "VM_RC=$?"; sync; poweroff -f
INIT
chmod +x "$R/init"
(cd "$R" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > "$W/initrd.gz")
set +e   # not -accel kvm: a stock kernel barely runs on this host's kvm_pvm
timeout "${VM_TIMEOUT:-700}" qemu-system-x86_64 -accel tcg -cpu max -m 1024 -smp 2 \
  -nodefaults -display none -serial stdio -monitor none -no-reboot -nic none \
  -kernel "$K/boot/vmlinuz-$KVER" -initrd "$W/initrd.gz" \
  -append "console=ttyS0 quiet panic=-1 oops=panic" </dev/null | tr -d '\r' | tee "$W/log"
set -e; rc=$(sed -n 's/^VM_RC=//p' "$W/log" | tail -1); exit "${rc:-125}"
