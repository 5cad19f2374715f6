package agent

// resolveFix is the fix `status` and join's verification print when the
// registry host does not resolve to the device: where the hosts file sits
// in the lookup order and how to drop a cached (often negative) answer, for
// each OS.
//   - macOS: mDNSResponder caches answers, negative ones too; dscacheutil
//     -flushcache alone leaves them; SIGHUP makes mDNSResponder clear its
//     cache of resource records (mDNSResponder(8)).
//   - Windows: the DNS Client service caches hosts-file and negative
//     answers: ipconfig /flushdns.
//   - Linux: systemd-resolved (resolvectl flush-caches) or nscd.
func resolveFix(goos string) string {
	switch goos {
	case "darwin":
		return "flush the resolver cache: sudo dscacheutil -flushcache; sudo killall -HUP mDNSResponder"
	case "windows":
		return "flush the DNS Client cache from an elevated prompt: ipconfig /flushdns (and check that no VPN or proxy resolves the name itself)"
	default:
		return "make the resolver read the hosts file first (hosts: files … in /etc/nsswitch.conf) or flush its cache (resolvectl flush-caches, or nscd -i hosts)"
	}
}
