package agent

import (
	"strings"

	"github.com/edgecr/edgecr/trust"
)

// desktopVMs are the desktop VMs on this machine (none under --root).
func (j *joinRun) desktopVMs() []trust.DesktopVM {
	if j.DetectDesktopVMs == nil {
		return nil
	}
	return j.DetectDesktopVMs()
}

// desktopVMNotices tells, when the trust step changed anything, what each
// desktop VM needs before it trusts the registry: a restart, or (podman
// machine) the CA copied in.
func (j *joinRun) desktopVMNotices(changed bool) {
	if !changed {
		return
	}
	e := j.e
	// A copy of the CA on the host, for the podman machine step: the one
	// Docker's certs.d holds, if join wrote it.
	caFile := ""
	if plan, err := trust.PlanRuntimes(j.RuntimePaths, e.Registry, []byte(e.CAPEM), []trust.Runtime{trust.Docker}); err == nil {
		for _, f := range plan.Files {
			if p := Rooted(j.GOOS, j.Root, f.Path); f.Runtime == trust.Docker && strings.HasSuffix(f.Path, "ca.crt") && exists(p) {
				caFile = p
			}
		}
	}
	for _, vm := range j.desktopVMs() {
		if n := trust.DesktopVMNotice(j.GOOS, vm, e.Registry, caFile); n != "" {
			j.emit(StepTrust, "restart", StatusNotice, n)
		}
	}
}
