package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// JoinCommands are the lines a user runs on a client to join with a token:
// what `edgecrd token create` prints and the web UI's Tokens page shows.
type JoinCommands struct {
	// Join is edgecr join URL --token TOKEN for sh, through sudo unless
	// the user is root (SudoUnlessRoot), so that it works for both.
	Join string
	// Install and InstallWindows are one-line installs for a client that
	// has nothing installed yet (Linux/macOS and elevated PowerShell);
	// InstallWindows is empty when the server key is not P-256.
	Install        string
	InstallWindows string
}

// JoinURL is the URL clients join: the first device IP when there is one
// (the client has no hosts entry yet), else the host name.
func (d *Device) JoinURL() string {
	host := d.Host
	if len(d.IPs) > 0 {
		host = d.IPs[0]
	}
	return "https://" + net.JoinHostPort(host, strconv.Itoa(d.Port))
}

// JoinCommands returns the join line for token and, with install, the
// one-line installs pinned to the current server key.
func (s *State) JoinCommands(token string, install bool) (JoinCommands, error) {
	if !install {
		return joinCommands(&s.Device, token, nil), nil
	}
	pair, err := s.LoadServerCert()
	if err != nil {
		return JoinCommands{}, err
	}
	return joinCommands(&s.Device, token, pair.Leaf), nil
}

// joinCommands are the lines for d; the install lines, pinned to the key
// of server, only when server is not nil.
func joinCommands(d *Device, token string, server *x509.Certificate) JoinCommands {
	url := d.JoinURL()
	jc := JoinCommands{Join: fmt.Sprintf("%s edgecr join %s --token %s", SudoUnlessRoot, url, token)}
	if server != nil {
		k, ok := server.PublicKey.(*ecdsa.PublicKey)
		jc.Install, jc.InstallWindows = installCommands(url, SPKIPin(server), token, ok && k.Curve == elliptic.P256())
	}
	return jc
}

// SudoUnlessRoot prefixes a command that needs root in the lines a user
// copies: sudo for a user, nothing for root (a root-only machine often has
// no sudo). sh, bash, zsh and fish read it alike.
const SudoUnlessRoot = `$([ "$(id -u)" = 0 ] || echo sudo)`

// ShellQuote single-quotes s for sh.
func ShellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// psQuote single-quotes s for PowerShell.
func psQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// spkiP256Prefix is the DER SubjectPublicKeyInfo of an ECDSA P-256 key up
// to its point: what the PowerShell line prepends to GetPublicKey() to hash
// the same bytes curl's --pinnedpubkey does.
const spkiP256Prefix = "0x30,0x59,0x30,0x13,0x06,0x07,0x2a,0x86,0x48,0xce,0x3d,0x02,0x01,0x06,0x08,0x2a,0x86,0x48,0xce,0x3d,0x03,0x01,0x07,0x03,0x42,0x00"

// installCommands are the one-line installs: curl fetches install.sh over
// a connection that only the pinned server key passes (-k: the device's CA
// is not trusted yet), the script fetches and checks the binaries the same
// way and runs edgecr join. The script, not the line, goes through sudo
// when the user is not root, so the line works on a root-only machine
// without sudo too. windows is empty unless the key is P-256.
func installCommands(url, pin, token string, p256 bool) (unix, windows string) {
	unix = fmt.Sprintf("curl -fsSL --pinnedpubkey %s -k %s/install.sh | sh -s -- --token %s --url %s --pin %s",
		ShellQuote(pin), url, ShellQuote(token), ShellQuote(url), ShellQuote(pin))
	if !p256 {
		return unix, ""
	}
	// The certificate check is a script block: PowerShell 7 cannot run it
	// on the thread .NET calls it on (PowerShell#13597), so the line says to
	// use Windows PowerShell 5.1 rather than fail with "wrong pin?".
	windows = fmt.Sprintf("if($PSVersionTable.PSEdition -eq 'Core'){throw 'edgecr: paste this into Windows PowerShell 5.1 (powershell.exe, run as administrator), not PowerShell 7 (pwsh)'};"+
		"$u=%s;$p=%s;"+
		"[Net.ServicePointManager]::SecurityProtocol='Tls12';"+
		"[Net.ServicePointManager]::ServerCertificateValidationCallback={param($s,$c)$c -ne $null -and [Convert]::ToBase64String([Security.Cryptography.SHA256]::Create().ComputeHash([byte[]]((%s)+$c.GetPublicKey()))) -eq $p};"+
		"&([scriptblock]::Create((New-Object Net.WebClient).DownloadString(\"$u/install.ps1\"))) -Token %s -Url $u -Pin \"sha256//$p\"",
		psQuote(url), psQuote(strings.TrimPrefix(pin, "sha256//")), spkiP256Prefix, psQuote(token))
	return unix, windows
}
