#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	systemctl enable edgecrd.service
	systemctl restart edgecrd.service
fi
