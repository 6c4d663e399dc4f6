#!/bin/sh
# Builds libcheapest-first.so next to this script with the system C compiler.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cc -shared -fPIC -O2 -Wall -Wextra -o "$here/libcheapest-first.so" \
   -I "$here/../../Sources/CapstanSDK/Sources/CCapstanPluginABI/include" "$here/cheapest_first.c"
echo "built $here/libcheapest-first.so"
