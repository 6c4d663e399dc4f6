#!/bin/sh
# Builds a tiny root file system for the runc runtime from Debian's busybox-static:
#   DEST/bin/busybox and a symlink per applet, /etc/passwd, /etc/group, empty /etc/hosts and
#   /etc/resolv.conf (the runtime binds the host's over them), /www/index.html, and empty
#   /proc /dev /sys /tmp for the container's own mounts.
# Idempotent: running it again refreshes DEST in place.
#
#   usage: build-rootfs.sh DEST
set -eu

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 DEST" >&2
    exit 2
fi
dest=$1
busybox=/bin/busybox

# busybox-static's binary is static, so it runs in a root file system without a libc (Debian's
# plain busybox package is dynamically linked and would not).
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed"; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y busybox-static >&2
    else
        echo "$0: Debian's busybox-static is not installed; run: sudo apt-get install busybox-static" >&2
        exit 1
    fi
fi

mkdir -p "$dest/bin" "$dest/etc" "$dest/www" "$dest/proc" "$dest/dev" "$dest/sys" "$dest/tmp" "$dest/root"
chmod 1777 "$dest/tmp"
# Copied through a temporary name, so a running container never sees half a binary.
cp "$busybox" "$dest/bin/.busybox.new"
mv -f "$dest/bin/.busybox.new" "$dest/bin/busybox"
for applet in $("$dest/bin/busybox" --list); do
    [ "$applet" = busybox ] && continue
    ln -sfn busybox "$dest/bin/$applet"
done

cat > "$dest/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$dest/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
touch "$dest/etc/hosts" "$dest/etc/resolv.conf"
echo "hello from capstan" > "$dest/www/index.html"

echo "$dest: busybox $("$dest/bin/busybox" | head -n 1 | cut -d' ' -f2) with $(ls "$dest/bin" | wc -l) commands"
