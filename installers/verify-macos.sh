#!/bin/sh
# Proves on a real Mac what the tests can only emulate (issue 17): join, pull,
# status, leave, and that everything join changed is back as it was.
#
#   sh verify-macos.sh --url https://DEVICE:31001 --token TOKEN [--image REPO:TAG]
#                      [--case fresh|untrusted-copy|pretrusted]
#
# Run it as an administrator (it uses sudo), with edgecr and
# docker-credential-edgecr on PATH (install.sh puts them in /usr/local/bin).
# In Terminal at the Mac's desktop it joins (answer the trust dialog); over
# SSH it checks instead that join refuses before spending the token (the
# token stays usable; only --case fresh there: setting up the others needs
# the dialog too). Each case needs a fresh token.
#
#   fresh           the CA is not on the Mac before join (default)
#   untrusted-copy  the CA is imported into the System keychain without a
#                   trust setting first: join must trust it (a "present"
#                   copy used to count as installed)
#   pretrusted      the CA is trusted before join: leave must keep it
#
# --image pulls REPO:TAG from the device with docker (Docker Desktop, colima
# or Rancher Desktop restarted as join says); without it, edgecr ls is the
# pull check. Exit 0 means every check passed.
set -eu

URL= TOKEN= IMAGE= CASE=fresh
while [ $# -gt 0 ]; do
	case "$1" in
	--url) URL=$2; shift 2 ;;
	--token) TOKEN=$2; shift 2 ;;
	--image) IMAGE=$2; shift 2 ;;
	--case) CASE=$2; shift 2 ;;
	*) echo "verify-macos: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ -n "$URL" ] && [ -n "$TOKEN" ] || { echo "verify-macos: --url and --token are required" >&2; exit 2; }
case "$CASE" in fresh | untrusted-copy | pretrusted) ;; *) echo "verify-macos: --case $CASE?" >&2; exit 2 ;; esac
[ "$(uname -s)" = Darwin ] || { echo "verify-macos: this is for macOS" >&2; exit 2; }

KC=/Library/Keychains/System.keychain
WORK=$(mktemp -d -t edgecr-verify)
FAILED=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; FAILED=1; }

# The device CA, fetched without trust and checked against the token's pin
# (edgecr1.<sha256 of the CA's DER>.<id>.<secret>).
PIN=$(echo "$TOKEN" | cut -d. -f2)
curl -fsSk "$URL/edgecr/v1/ca" -o "$WORK/ca.pem"
GOT=$(openssl x509 -in "$WORK/ca.pem" -outform der | shasum -a 256 | cut -d' ' -f1)
[ "$GOT" = "$PIN" ] || { echo "verify-macos: the device's CA is sha256 $GOT, the token pins $PIN" >&2; exit 1; }
SHA1=$(openssl x509 -in "$WORK/ca.pem" -noout -fingerprint -sha1 | cut -d= -f2 | tr -d :)

trusted() { security verify-cert -c "$WORK/ca.pem" -p basic -l -L >/dev/null 2>&1; }
in_keychain() { security find-certificate -a -Z "$KC" | grep -q "SHA-1 hash: $SHA1"; }

# What join may change, as it is before the case is set up.
snapshot() {
	{
		echo "## /etc/hosts"; shasum -a 256 /etc/hosts
		echo "## keychain"; security find-certificate -a -Z "$KC" | grep 'SHA-1 hash' | sort
		echo "## admin trust settings"; security dump-trust-settings -d 2>&1 | grep -v '^Number of' | sort
		echo "## docker config"; shasum -a 256 "$HOME/.docker/config.json" 2>/dev/null || echo none
		echo "## certs.d"; ls -R "$HOME/.docker/certs.d" 2>/dev/null || echo none
		echo "## edgecr state"; ls /var/lib/edgecr 2>/dev/null || echo none
		echo "## credentials"; ls "$HOME/Library/Application Support/edgecr" 2>/dev/null || echo none
	} >"$1"
}
snapshot "$WORK/before"

case "$CASE" in
untrusted-copy)
	sudo security add-certificates -k "$KC" "$WORK/ca.pem"
	in_keychain && ! trusted && ok "setup: an untrusted copy is in the System keychain" || bad "setup: untrusted copy"
	;;
pretrusted)
	sudo security add-trusted-cert -d -r trustRoot -k "$KC" "$WORK/ca.pem"
	trusted && ok "setup: the CA is trusted before join" || bad "setup: pretrusting the CA"
	;;
esac

# undo_setup takes back what the case set up before join.
undo_setup() {
	sudo security remove-trusted-cert -d "$WORK/ca.pem" 2>/dev/null || true
	if in_keychain; then sudo security delete-certificate -Z "$SHA1" "$KC" >/dev/null || true; fi
}

SESSION=$(launchctl managername 2>/dev/null || echo unknown)
if [ "$SESSION" != Aqua ]; then
	# Over SSH or from a daemon: join must refuse before the token is spent.
	if sudo edgecr join "$URL" --token "$TOKEN" >"$WORK/join.out" 2>&1; then
		bad "join without a desktop session ($SESSION) succeeded"
	elif grep -q "desktop session" "$WORK/join.out" && grep -q "not spent" "$WORK/join.out"; then
		ok "join refused in launchd session $SESSION before spending the token"
	else
		bad "join failed otherwise:"; cat "$WORK/join.out"
	fi
	[ "$CASE" = fresh ] || undo_setup
	snapshot "$WORK/after"
	diff -u "$WORK/before" "$WORK/after" && ok "nothing changed" || bad "the refused join changed the Mac"
	echo "(the token is still valid: run this again in Terminal at the Mac's desktop to join)"
	exit $FAILED
fi

echo "Joining: macOS asks for an administrator in a dialog now."
if sudo edgecr join "$URL" --token "$TOKEN"; then ok "join"; else bad "join"; fi
trusted && ok "the CA is trusted (security verify-cert)" || bad "the CA is not trusted after join"
REG=$(edgecr status -o json | sed -n 's/.*"registry": *"\([^"]*\)".*/\1/p' | head -n 1)
[ -n "$REG" ] && ok "joined registry $REG" || bad "edgecr status names no registry"
if edgecr status; then ok "edgecr status: every hop"; else bad "edgecr status reports a broken hop"; fi
if [ -n "$IMAGE" ]; then
	docker pull "$REG/$IMAGE" && ok "docker pull $REG/$IMAGE" || bad "docker pull $REG/$IMAGE (restarted what join said to?)"
else
	edgecr ls >/dev/null && ok "edgecr ls (pull path: TLS with the keychain, credential helper)" || bad "edgecr ls"
fi

if sudo edgecr leave; then ok "leave"; else bad "leave"; fi
case "$CASE" in
pretrusted)
	trusted && ok "leave kept the CA trusted before join" || bad "leave removed a CA the user trusted"
	undo_setup
	;;
*)
	! in_keychain && ok "the CA is gone from the System keychain" || bad "the CA is still in the System keychain"
	;;
esac
snapshot "$WORK/after"
diff -u "$WORK/before" "$WORK/after" && ok "everything join changed is back" || bad "the Mac differs from before join (diff above)"
rm -rf "$WORK"
exit $FAILED
