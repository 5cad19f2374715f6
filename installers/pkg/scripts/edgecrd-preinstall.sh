#!/bin/sh
# edgecrd runs as its own system user; its data dir is the unit's
# StateDirectory (/var/lib/edgecrd), which systemd creates owned by it.
set -e
if ! getent passwd edgecrd >/dev/null 2>&1; then
	if command -v useradd >/dev/null 2>&1; then
		useradd --system --user-group --no-create-home --home-dir /var/lib/edgecrd --shell /usr/sbin/nologin edgecrd
	else
		adduser --system --group --no-create-home --home /var/lib/edgecrd --shell /usr/sbin/nologin edgecrd
	fi
fi
