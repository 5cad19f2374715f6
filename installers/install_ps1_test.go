package installers

import (
	"regexp"
	"strings"
	"testing"
)

// No PowerShell runs here (Debian ships none: apt-cache policy powershell
// finds nothing), so install.ps1's Windows behaviour is proven by
// installers/verify-windows.ps1 on Windows; these checks keep the known
// pitfalls (issue 17) from coming back.
func TestInstallPS1AvoidsKnownPitfalls(t *testing.T) {
	b, err := Scripts.ReadFile("install.ps1")
	if err != nil {
		t.Fatal(err)
	}
	code := stripPSComments(string(b))
	for _, tc := range []struct {
		bad *regexp.Regexp
		why string
	}{
		// dotnet/runtime#89695, PowerShell#15520: expands %VAR% entries and
		// writes REG_SZ back.
		{regexp.MustCompile(`(?i)\[Environment\]::(Get|Set)EnvironmentVariable\(\s*'Path'[^)]*'Machine'`), "reads or writes the machine PATH through [Environment], which freezes REG_EXPAND_SZ entries"},
		// PowerShell#13597: no runspace on the thread .NET calls it on.
		{regexp.MustCompile(`(?i)ServerCertificateValidationCallback\s*=\s*\{`), "uses a script block certificate callback, which fails in PowerShell 7"},
		// A running helper cannot be overwritten in place.
		{regexp.MustCompile(`(?i)(^|[\s;(])Move-Item\b[^\n]*-Force`), "overwrites binaries with Move-Item, which fails while they run"},
	} {
		if loc := tc.bad.FindStringIndex(code); loc != nil {
			t.Errorf("install.ps1 %s: %q", tc.why, code[loc[0]:loc[1]])
		}
	}
	for _, want := range []string{
		"DoNotExpandEnvironmentNames",                                 // reads PATH unexpanded
		"RegistryValueKind]::ExpandString",                            // writes it back as REG_EXPAND_SZ
		"Add-Type -TypeDefinition",                                    // the compiled callback
		"[EdgecrInstall1]::Callback()",                                // installed as the callback
		"BroadcastEnvironmentChange",                                  // new terminals see PATH
		"Start-Sleep -Milliseconds $delay",                            // retried replacement
		"Runtime.InteropServices.RuntimeInformation]::OSArchitecture", // x64 PowerShell on ARM64
	} {
		if !strings.Contains(code, want) {
			t.Errorf("install.ps1 lacks %q", want)
		}
	}
}

// stripPSComments drops # comments outside strings, roughly: whole-line
// comments and the <# #> blocks (install.ps1 has no trailing ones).
func stripPSComments(s string) string {
	s = regexp.MustCompile(`(?s)<#.*?#>`).ReplaceAllString(s, "")
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
