#!/usr/bin/env bash
# tests/vm/run-systemd.sh PAYLOAD_DIR: boot Debian's stock kernel under QEMU (TCG) with a
# Debian bookworm userland (mmdebstrap, minbase + systemd) as its root, systemd as PID 1, the
# `vivid` camera module, and PAYLOAD_DIR installed as README "Running as a service" says:
#   PAYLOAD/steadyface          -> /usr/local/bin/steadyface
#   PAYLOAD/steadyface.service  -> /etc/systemd/system/
#   PAYLOAD/steadyface.yaml     -> /etc/steadyface/
#   PAYLOAD/models/             -> /var/lib/steadyface/models/
#   PAYLOAD/share/              -> /usr/local/share/steadyface/ (clips, a fake ffmpeg)
#   PAYLOAD/check.sh            -> run by a oneshot unit once the system is up
# Prints the guest's console; exits with check.sh's status (125: none reported).
#
#   STEADYFACE_VM_CACHE  kernel and rootfs cache (default ~/.cache/steadyface/vm)
#   VM_TIMEOUT           seconds before QEMU is killed (default 900)
set -euo pipefail
PAYLOAD=$(readlink -f "${1:?usage: $0 PAYLOAD_DIR}")
C=${STEADYFACE_VM_CACHE:-$HOME/.cache/steadyface/vm}; mkdir -p "$C"
for tool in qemu-system-x86_64 mmdebstrap depmod busybox; do
  command -v "$tool" >/dev/null || { echo "run-systemd: $tool missing (scripts/setup.sh installs it)" >&2; exit 125; }
done
. "$(dirname "$0")/kernel.sh"   # sets K (unpacked kernel package) and KVER
ROOTFS=$C/rootfs-bookworm-systemd.tar
if [ ! -f "$ROOTFS" ]; then
  echo "run-systemd: building the guest rootfs with mmdebstrap (once; cached in $C)" >&2
  mmdebstrap --quiet --variant=minbase --include=systemd,systemd-sysv,dbus,udev,kmod \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --format=tar bookworm "$ROOTFS.tmp" >&2
  mv "$ROOTFS.tmp" "$ROOTFS"
fi
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; R=$W/root
mkdir -p "$R"; tar -C "$R" -xf "$ROOTFS"
# vivid and its dependencies, where modprobe finds them.
for ko in $(modprobe -d "$K" -S "$KVER" --show-depends vivid | awk '$1=="insmod"{print $2}'); do
  rel=${ko#"$K"}; mkdir -p "$R$(dirname "$rel")"; cp "$ko" "$R$rel"
done
cp "$K/lib/modules/$KVER"/modules.{order,builtin,builtin.modinfo} "$R/lib/modules/$KVER/" 2>/dev/null || true
depmod -b "$R" "$KVER"
install -m755 "$PAYLOAD/steadyface" "$R/usr/local/bin/steadyface"
install -m644 "$PAYLOAD/steadyface.service" "$R/etc/systemd/system/steadyface.service"
install -Dm644 "$PAYLOAD/steadyface.yaml" "$R/etc/steadyface/steadyface.yaml"
mkdir -p "$R/var/lib/steadyface" "$R/usr/local/share/steadyface"
cp -a "$PAYLOAD/models" "$R/var/lib/steadyface/models"
cp -a "$PAYLOAD/share/." "$R/usr/local/share/steadyface/"
install -m755 "$PAYLOAD/check.sh" "$R/usr/local/bin/steadyface-check"
cat > "$R/etc/systemd/system/steadyface-check.service" <<'UNIT'
[Unit]
Description=steadyface service checks
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/bin/sh -c '/usr/local/bin/steadyface-check; echo "SD_RC=$?"; sync'
ExecStartPost=/bin/systemctl --no-block poweroff
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
[Install]
WantedBy=multi-user.target
UNIT
ln -s /etc/systemd/system/steadyface-check.service "$R/etc/systemd/system/multi-user.target.wants/steadyface-check.service"
# No login prompt on the console the checks print to.
ln -sf /dev/null "$R/etc/systemd/system/serial-getty@ttyS0.service"
ln -sf /dev/null "$R/etc/systemd/system/getty@tty1.service"
echo steadyface-vm > "$R/etc/hostname"
(cd "$R" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > "$W/initrd.gz")
rm -rf "$R"
set +e
timeout "${VM_TIMEOUT:-900}" qemu-system-x86_64 -accel tcg -cpu max -m 2048 -smp 2 \
  -nodefaults -display none -serial stdio -monitor none -no-reboot -nic none \
  -kernel "$K/boot/vmlinuz-$KVER" -initrd "$W/initrd.gz" \
  -append "console=ttyS0 rdinit=/sbin/init panic=-1 quiet systemd.show_status=0" </dev/null | stdbuf -oL tr -d '\r' | tee "$W/log"
set -e; rc=$(sed -n 's/^SD_RC=//p' "$W/log" | tail -1); exit "${rc:-125}"
