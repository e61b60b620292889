#!/usr/bin/env bash
# The system packages of scripts/packages.txt, by group (demo, test, cross).
#
#   scripts/packages.sh install GROUP...  install what dpkg says is not installed
#   scripts/packages.sh check GROUP...    every tool and library those groups promise must
#                                         come from a package of the list (or one it depends on)
#   scripts/packages.sh libclang          print the directory of the libclang.so that the list's
#                                         package ships (for LIBCLANG_PATH)
#
# Deciding by package rather than by file is the point: a machine can have a similar file from
# another package (Debian's libclang-cpp14 ships libclang-cpp.so.14, which a glob for
# libclang*.so* matches, but bindgen cannot load it). The check resolves every promised file
# through dpkg, so a tool that a script uses but the list does not declare fails CI even on a
# machine where someone installed it by hand. SKIP_APT=1 makes `install` only report.
set -euo pipefail
list="$(dirname "${BASH_SOURCE[0]}")/packages.txt"

# package group provides... for the given groups (all groups when none given)
rows() {
  sed 's/#.*//' "$list" | awk -v want=" $* " 'NF >= 2 && (want == "  " || index(want, " " $2 " "))'
}
packages() { rows "$@" | awk '{print $1}'; }

# Whether a package is installed. Not `dpkg -s`'s exit status: that is 0 too for a package
# removed with its config files kept ("deinstall ok config-files"), which is not there.
installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }

# The package and everything it depends on that is installed (alternatives: those installed).
closure() {
  local -A seen=(); local queue=("$@") p deps d
  while [ "${#queue[@]}" -gt 0 ]; do
    p=${queue[0]}; queue=("${queue[@]:1}")
    [ -n "${seen[$p]:-}" ] && continue
    installed "$p" || continue
    seen[$p]=1; echo "$p"
    deps=$(dpkg-query -W -f='${Depends},${Pre-Depends}' "$p" 2>/dev/null | tr ',|' '\n\n' |
      sed 's/(.*)//; s/:any//; s/^ *//; s/ *$//' | grep -v '^$' || true)
    for d in $deps; do queue+=("$d"); done
  done
}

# Which package owns a path (links resolved), or nothing.
owner() {
  dpkg -S "$(readlink -f "$1")" 2>/dev/null | head -1 | cut -d: -f1 ||
    dpkg -S "$1" 2>/dev/null | head -1 | cut -d: -f1 || true
}

# The libclang.so that the list's provider of lib:libclang.so (with its dependencies) installs:
# the exact file name bindgen's loader tries first.
libclang_file() {
  local f pkg
  pkg=$(rows | awk '{for (i = 3; i <= NF; i++) if ($i == "lib:libclang.so") print $1}' | head -1)
  if [ -z "$pkg" ]; then echo "packages: no package in $list provides lib:libclang.so (bindgen needs it)" >&2; return 1; fi
  f=$(closure "$pkg" | xargs -r dpkg -L 2>/dev/null | grep -E '/libclang\.so$' | sort -V | tail -1)
  if [ -n "$f" ] && [ -e "$f" ]; then echo "$f"; return 0; fi
  echo "packages: no libclang.so from package $pkg (is it installed? scripts/setup.sh installs it)" >&2
  return 1
}
libclang_dir() { local f; f=$(libclang_file) && dirname "$f"; }

cmd=${1:-}; shift || true
case "$cmd" in
  install)
    need=()
    for p in $(packages "$@"); do installed "$p" || need+=("$p"); done
    [ "${#need[@]}" -eq 0 ] && exit 0
    if [ "${SKIP_APT:-0}" = 1 ]; then echo "packages: missing ${need[*]} (SKIP_APT=1: not installing)" >&2; exit 0; fi
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "packages: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    ;;
  check)
    bad=0
    while read -r pkg _group provides; do
      allowed=" $(closure "$pkg" | tr '\n' ' ') "
      for item in $provides; do
        kind=${item%%:*}; what=${item#*:}
        case "$kind" in
          bin) path=$(command -v "$what" || true) ;;
          file) path=$what; [ -e "$path" ] || path="" ;;
          lib) [ "$what" = libclang.so ] || { echo "packages: only lib:libclang.so is known" >&2; bad=1; continue; }
               path=$(libclang_file 2>/dev/null || true) ;;
          *) echo "packages: $list: unknown kind '$kind' in '$item'" >&2; bad=1; continue ;;
        esac
        if [ -z "$path" ]; then
          echo "packages: $what (declared as from $pkg) is not on this machine" >&2; bad=1; continue
        fi
        o=$(owner "$path")
        case "$allowed" in
          *" $o "*) ;;
          *) echo "packages: $what resolves to $path, from package '${o:-none}', not from $pkg or what it depends on" >&2; bad=1 ;;
        esac
      done
    done < <(rows "$@")
    # Every tool the project runs must be declared above, or be part of the base toolchain.
    root="$(dirname "$list")/.."
    declared=" $(rows | awk '{for (i = 3; i <= NF; i++) print $i}' | sed 's/^[a-z]*://' | tr '\n' ' ') "
    base=" sh bash cargo rustup rustc python3 git sudo apt-get dpkg ldd sha256sum cross-env "
    for t in $( (grep -rhoE 'Command::new\("[A-Za-z0-9_.-]+"\)' "$root/src" "$root/tests" 2>/dev/null |
                  sed -E 's/.*\("([^"]+)"\)/\1/'
                grep -rhoE 'command -v "?[A-Za-z0-9_.-]+' "$root/scripts" "$root/cross" "$root/tests" 2>/dev/null |
                  awk '{print $3}' | tr -d '"') | sort -u); do
      case "$declared$base" in
        *" $t "*) ;;
        *) echo "packages: the project runs '$t', which $list does not declare" >&2; bad=1 ;;
      esac
    done
    [ "$bad" = 0 ] && echo "packages: every tool and library of [${*:-all}] comes from a declared package" >&2
    exit "$bad"
    ;;
  libclang) libclang_dir ;;
  list) packages "$@" ;;
  *) echo "usage: $0 install|check|list [GROUP...] | libclang" >&2; exit 2 ;;
esac
