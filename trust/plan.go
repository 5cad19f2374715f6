package trust

import (
	"fmt"
	"path"
)

// StagedPEM stands, in a StorePlan, for the temporary PEM file the macOS
// store hands to security.
const StagedPEM = "<staged PEM file>"

// StorePlan describes what a Store of some kind does for one certificate, for
// --dry-run output and for tests. Paths are as this process opens them (under
// the root).
type StorePlan struct {
	Kind      Kind
	File      string     // anchor file written; "" where the tool imports a staged copy
	Bundle    string     // refreshed bundle Installed checks; "" if none
	Install   [][]string // commands run by Install (after writing File)
	Uninstall [][]string // commands run by Uninstall (after removing File)
	Check     [][]string // read-only commands run by Installed
	Actions   []string   // what Install does without a command (Windows: crypt32 calls)
	Notes     []string
}

// PlanStore returns the plan of the Store NewStore(kind, root, ...) builds,
// for the certificate pem stored under name. It is pure.
func PlanStore(kind Kind, root, name string, pem []byte) (StorePlan, error) {
	if err := checkName(name); err != nil {
		return StorePlan{}, err
	}
	c, err := parseCA(pem)
	if err != nil {
		return StorePlan{}, err
	}
	p := StorePlan{Kind: kind}
	switch kind {
	case Debian, Alpine, RHEL, Arch:
		l := linuxLayouts[kind]
		p.File = rooted(root, path.Join(l.anchorDir, anchorBase(name)+".crt"))
		in, out := l.commands(root)
		if in == nil {
			p.Notes = append(p.Notes, fmt.Sprintf("%s cannot be pointed at %s: the anchor is written but the trust store is not refreshed; run %s inside the target system", l.tool, root, l.tool))
			return p, nil
		}
		p.Bundle = rooted(root, l.bundle)
		p.Install = [][]string{in}
		p.Uninstall = [][]string{out}
	case MacOS, Windows:
		if !isLiveRoot(root) {
			return StorePlan{}, fmt.Errorf("planning %s trust store under %s: %w: it cannot be relocated", kind, root, ErrUnsupported)
		}
		if kind == MacOS {
			p.Install = [][]string{keychainAdd(StagedPEM)}
			p.Uninstall = [][]string{keychainUntrust(StagedPEM), keychainDelete(c.sha1)}
			p.Check = [][]string{keychainFind(), keychainVerify(StagedPEM)}
		} else {
			p.Actions = []string{"add the CA (sha1 " + c.sha1 + ") to the LocalMachine Root store (crypt32)"}
		}
	default:
		return StorePlan{}, fmt.Errorf("planning %q trust store: %w", kind, ErrUnsupported)
	}
	return p, nil
}
