#!/bin/sh
# Stops the service; the data dir (/var/lib/edgecrd: CA, credentials,
# images) and the edgecrd user stay.
set -e
case "${1:-}" in
upgrade | 1) exit 0 ;; # deb upgrade; rpm: a version remains installed
esac
if [ -d /run/systemd/system ]; then
	systemctl disable --now edgecrd.service || true
fi
