#!/usr/bin/env bash
# cross/glibc-check.sh BINARY FLOOR: fail if BINARY needs a GLIBC symbol version above FLOOR.
set -euo pipefail
bin="${1:?usage: $0 BINARY FLOOR}"; floor="${2:?usage: $0 BINARY FLOOR}"
need=$(aarch64-linux-gnu-objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
if [ "$(printf '%s\n%s\n' "$need" "$floor" | sort -V | tail -1)" != "$floor" ]; then
  echo "cross: $bin needs GLIBC_$need, above the floor $floor" >&2; exit 1
fi
echo "cross: $bin needs at most GLIBC_$need (floor $floor)"
