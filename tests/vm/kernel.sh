# Sourced by the VM scripts: Debian's stock amd64 kernel package, fetched once with
# `apt-get download` into $C and unpacked; sets K (its root) and KVER.
export DEBIAN_FRONTEND=noninteractive
kpkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
KPKG=$(kpkg)
if [ -z "$KPKG" ]; then   # a fresh machine may have no package lists yet
  if [ "$(id -u)" = 0 ]; then apt-get update -qq; else sudo apt-get update -qq; fi
  KPKG=$(kpkg)
fi
[ -n "$KPKG" ] || { echo "vm: apt knows no linux-image-amd64 package" >&2; exit 125; }
KVER=${KPKG#linux-image-}; K=$C/$KVER
if [ ! -f "$K/.done" ]; then
  echo "vm: fetching kernel $KPKG (once; cached in $C)" >&2
  rm -rf "$K"; mkdir -p "$K"; (cd "$C" && apt-get download -qq "$KPKG")
  dpkg -x "$C/$KPKG"_*.deb "$K"; rm -f "$C/$KPKG"_*.deb
  depmod -b "$K" "$KVER"; touch "$K/.done"
fi
