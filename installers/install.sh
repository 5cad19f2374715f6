#!/bin/sh
# edgecr installer for Linux and macOS, served by edgecrd at /install.sh.
#
#   curl -fsSL --pinnedpubkey 'sha256//PIN' -k https://DEVICE:31001/install.sh |
#     sh -s -- --token TOKEN --url https://DEVICE:31001 --pin 'sha256//PIN'
#
# The same line works as root and as a user: root installs and joins itself,
# a user's copy into the bin dir and `edgecr join` go through sudo (without
# sudo, a user gets a message before anything is downloaded).
#
# Downloads edgecr and docker-credential-edgecr for this OS and architecture
# from the device over the same pinned connection, checks them against the
# device's SHA256SUMS, installs them into /usr/local/bin (replacing older
# versions: re-running upgrades in place) and runs `edgecr join`. On any
# failure nothing is installed.
set -eu

# Everything is in main, called on the last line: when curl's download is
# cut short, sh has nothing to run instead of running half a script.
main() {
	BIN_DIR=/usr/local/bin
	TOKEN=
	URL=
	PIN=

	die() {
		echo "edgecr install: $*" >&2
		exit 1
	}

	while [ $# -gt 0 ]; do
		case "$1" in
		--token) [ $# -ge 2 ] || die "--token needs a value"; TOKEN=$2; shift 2 ;;
		--url) [ $# -ge 2 ] || die "--url needs a value"; URL=$2; shift 2 ;;
		--pin) [ $# -ge 2 ] || die "--pin needs a value"; PIN=$2; shift 2 ;;
		--bin-dir) [ $# -ge 2 ] || die "--bin-dir needs a value"; BIN_DIR=$2; shift 2 ;;
		*) die "unknown argument $1 (want --token, --url, --pin, --bin-dir)" ;;
		esac
	done
	[ -n "$TOKEN" ] || die "missing --token"
	[ -n "$URL" ] || die "missing --url"
	[ -n "$PIN" ] || die "missing --pin (sha256//… of the device's server key)"
	case "$URL" in
	https://*) ;;
	*) die "--url $URL: want https://DEVICE:PORT" ;;
	esac
	URL=${URL%/}

	# Root does the rest itself; anyone else through sudo.
	SUDO=
	if [ "$(id -u)" != 0 ]; then
		command -v sudo >/dev/null 2>&1 ||
			die "installing into $BIN_DIR and joining need root: run this as root (no sudo found); nothing installed"
		SUDO=sudo
	fi
	as_root() { ${SUDO:+sudo} "$@"; }

	case "$(uname -s)" in
	Linux) OS=linux ;;
	Darwin) OS=darwin ;;
	*) die "unsupported OS $(uname -s) (want Linux or Darwin; on Windows use install.ps1)" ;;
	esac
	case "$(uname -m)" in
	x86_64 | amd64) ARCH=amd64 ;;
	aarch64 | arm64) ARCH=arm64 ;;
	*) die "unsupported architecture $(uname -m) (want x86_64 or arm64)" ;;
	esac
	# A shell under Rosetta 2 (an x86_64 Terminal or Homebrew on Apple
	# silicon) sees uname -m say x86_64; the Mac is arm64, and a native
	# agent is what it should run (sysctl.proc_translated: 1 under Rosetta,
	# 0 native, absent on Intel Macs).
	if [ "$OS" = darwin ] && [ "$ARCH" = amd64 ] && [ "$(sysctl -n sysctl.proc_translated 2>/dev/null || true)" = 1 ]; then
		ARCH=arm64
		echo "edgecr install: this shell runs under Rosetta 2; installing the native arm64 build"
	fi

	command -v curl >/dev/null 2>&1 || die "curl is required"
	if command -v sha256sum >/dev/null 2>&1; then
		sha256() { sha256sum "$1" | cut -d ' ' -f 1; }
	elif command -v shasum >/dev/null 2>&1; then
		sha256() { shasum -a 256 "$1" | cut -d ' ' -f 1; }
	else
		die "sha256sum or shasum is required"
	fi

	TMP=$(mktemp -d 2>/dev/null || mktemp -d -t edgecr)
	trap 'rm -rf "$TMP"' EXIT
	trap 'exit 1' HUP INT TERM

	# fetch downloads $URL/dist/$1 into $TMP/$1. A device that answers 429
	# (throttling this address: many nodes installing at once behind one
	# NAT) or 503 (busy) is waited out as its Retry-After says, plus up to
	# a quarter (and a second) more so that nodes refused together do not all come back
	# together: at most $TRIES attempts and $MAX_WAIT s of waiting in all.
	TRIES=8
	MAX_WAIT=180
	waited=0
	fetch() {
		try=1
		while :; do
			# -k: the device's CA is not trusted yet; --pinnedpubkey is what
			# authenticates the device on this first contact.
			code=$(curl -sS --pinnedpubkey "$PIN" -k -D "$TMP/headers" -o "$TMP/$1" -w '%{http_code}' "$URL/dist/$1") || code=000
			case "$code" in
			2??) return 0 ;;
			000) die "downloading $URL/dist/$1 failed (see above); nothing installed" ;;
			429 | 503) ;;
			*)
				# An HTTP error: show what the device said (e.g. that it was
				# started without --dist-dir).
				why=$(head -c 300 "$TMP/$1" 2>/dev/null) || true
				[ -z "$why" ] || echo "edgecr install: the device says: $why" >&2
				die "downloading $URL/dist/$1 failed: HTTP $code; nothing installed"
				;;
			esac
			ra=$(tr -d '\r' <"$TMP/headers" | awk 'tolower($1) == "retry-after:" { v = $2 } END { print v }')
			case "$ra" in
			'' | *[!0-9]*) ra=$((1 << (try < 5 ? try - 1 : 5))) ;; # none (or a date): 1, 2, 4 … 32 s
			esac
			[ "$try" -lt "$TRIES" ] ||
				die "downloading $URL/dist/$1: the device still answers HTTP $code after $TRIES attempts (${waited}s of waiting); nothing installed"
			[ $((waited + ra)) -le "$MAX_WAIT" ] ||
				die "downloading $URL/dist/$1: the device answers HTTP $code and asks to wait ${ra}s more, beyond the ${MAX_WAIT}s this script waits in all; nothing installed"
			rnd=$(od -An -N2 -tu2 /dev/urandom 2>/dev/null | tr -d ' ') || rnd=0
			pause=$((ra + ${rnd:-0} % (ra / 4 + 2)))
			[ $((waited + pause)) -le "$MAX_WAIT" ] || pause=$((MAX_WAIT - waited))
			try=$((try + 1))
			echo "edgecr install: the device answered HTTP $code (busy, or throttling this address) for $1; retrying in ${pause}s (attempt $try of $TRIES)" >&2
			sleep "$pause"
			waited=$((waited + pause))
		done
	}

	AGENT=edgecr-$OS-$ARCH
	HELPER=docker-credential-edgecr-$OS-$ARCH
	fetch SHA256SUMS
	for f in "$AGENT" "$HELPER"; do
		fetch "$f"
		want=$(awk -v n="$f" '$2 == n || $2 == "*" n { print $1; exit }' "$TMP/SHA256SUMS")
		[ -n "$want" ] || die "$f is not listed in $URL/dist/SHA256SUMS; nothing installed"
		got=$(sha256 "$TMP/$f")
		[ "$got" = "$want" ] || die "checksum mismatch for $f: got sha256 $got, SHA256SUMS says $want; nothing installed"
	done

	as_root mkdir -p "$BIN_DIR" || die "creating $BIN_DIR failed; nothing installed"
	# Copy both next to their destination first, then rename: each binary is
	# replaced atomically, and a failed copy leaves the old versions in place.
	install_tmp() {
		as_root cp "$TMP/$1" "$BIN_DIR/.$2.new.$$" && as_root chmod 0755 "$BIN_DIR/.$2.new.$$"
	}
	if ! install_tmp "$AGENT" edgecr || ! install_tmp "$HELPER" docker-credential-edgecr; then
		as_root rm -f "$BIN_DIR/.edgecr.new.$$" "$BIN_DIR/.docker-credential-edgecr.new.$$"
		die "copying into $BIN_DIR failed; nothing installed"
	fi
	as_root mv -f "$BIN_DIR/.docker-credential-edgecr.new.$$" "$BIN_DIR/docker-credential-edgecr"
	as_root mv -f "$BIN_DIR/.edgecr.new.$$" "$BIN_DIR/edgecr"
	echo "edgecr install: installed $BIN_DIR/edgecr and $BIN_DIR/docker-credential-edgecr ($OS/$ARCH)"

	rm -rf "$TMP"
	trap - EXIT
	exec ${SUDO:+sudo} "$BIN_DIR/edgecr" join "$URL" --token "$TOKEN"
}

main "$@"
