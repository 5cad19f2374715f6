package agent

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/edgecr/edgecr/credhelper"
	"github.com/edgecr/edgecr/hostsfile"
	"github.com/edgecr/edgecr/trust"
)

// PlanResult is what `edgecr join --dry-run` would do; `-o json` prints it.
type PlanResult struct {
	DryRun        bool    `json:"dryRun"`
	DeviceURL     string  `json:"deviceURL"`
	CAFingerprint string  `json:"caFingerprint"`
	Registry      string  `json:"registry"`
	Host          string  `json:"host"`
	Port          int     `json:"port"`
	IP            string  `json:"ip"`
	Steps         []Event `json:"steps"`
}

// placeholderHost stands for the registry host when the device's
// certificate names none.
const placeholderHost = "<registry host>"

// PlanJoin prints what Join would do and changes nothing, on the client or
// on the device: it does not spend the token. It connects to the device
// over the pinned connection and fetches the CA (GET /edgecr/v1/ca, which
// needs no secret), so the pin check is real; the registry host comes from
// the device certificate's names and the port from the URL, since only the
// join answer would say them for sure.
func (s *System) PlanJoin(ctx context.Context, o JoinOptions) (*PlanResult, error) {
	tok, err := ParseToken(o.Token)
	if err != nil {
		return nil, err
	}
	base, err := ParseDeviceURL(o.URL)
	if err != nil {
		return nil, err
	}
	client := NewDeviceClient(base, tok.Pin)
	defer client.Close()
	caPEM, err := client.FetchCA(ctx)
	if err != nil {
		return nil, err
	}
	port, _ := strconv.Atoi(base.Port())
	host := placeholderHost
	if names := client.ServerNames(); len(names) > 0 {
		host = names[0]
	}
	registry := net.JoinHostPort(host, strconv.Itoa(port))
	res := &PlanResult{DryRun: true, DeviceURL: base.String(), CAFingerprint: "sha256:" + tok.Pin, Registry: registry, Host: host, Port: port}
	rep := &reporter{report: o.Report}
	plan := func(step, item, format string, args ...any) {
		rep.emit(step, item, StatusPlanned, fmt.Sprintf(format, args...))
	}
	warn := func(step, item, format string, args ...any) {
		rep.emit(step, item, StatusWarning, fmt.Sprintf(format, args...))
	}

	// bootstrap
	plan(StepBootstrap, "bootstrap", "%s presents the device CA sha256:%s, as the token pins", base, tok.Pin)
	if st, err := s.State.Load(); err != nil {
		warn(StepBootstrap, "state", "%v", err)
	} else if e := st.FindPin(tok.Pin); e != nil && e.Done(StepBootstrap) {
		plan(StepBootstrap, "bootstrap", "already joined as %s (%s): the token is spent only if the device no longer accepts that credential", e.ClientID, e.Registry)
	} else {
		name := o.Name
		if name == "" {
			name = "(unnamed)"
		}
		plan(StepBootstrap, "bootstrap", "POST %s%s spends one use of token %s for a client named %s; the credential is kept in %s (0600) until step credentials", base, pathJoin, tok.ID, name, s.State.SecretsPath())
	}
	if err := planDeviceChecks(base, caPEM, host, o.AllowUnconstrainedCA, o.AllowDomains); err != nil {
		warn(StepBootstrap, "device", "join would refuse before spending the token: %v", err)
	}
	if host != placeholderHost {
		if found, err := s.Docker.Foreign(registry); err == nil && len(found) > 0 && !o.ReplaceCredentials {
			warn(StepCredentials, "docker config", "join would refuse before spending the token: %s has %s (--replace-credentials replaces it)", s.Docker.Path(), strings.Join(found, ", "))
		}
	}
	if host == placeholderHost {
		warn(StepBootstrap, "registry", "the device certificate names no host: the device's answer will say the registry host")
	} else {
		plan(StepBootstrap, "registry", "registry %s (from the device certificate; the device's answer decides)", registry)
	}

	// hosts
	ip, err := chooseIP(base, nil)
	ipText := "<device IP>"
	if err == nil {
		ipText = ip.String()
		res.IP = ipText
	} else {
		ipText = "<first IP the device advertises>"
	}
	plan(StepHosts, "hosts", "add %s %s to %s, in a block marked # BEGIN/END edgecr %s", ipText, host, s.HostsPath, host)
	if host != placeholderHost && ip.IsValid() {
		if content, err := s.Hosts(s.HostsPath).Read(ctx); err == nil {
			if _, err := hostsfile.Add(content, ip, host); err != nil {
				warn(StepHosts, "hosts", "join would stop here: %v", err)
			}
		}
	}

	// trust
	s.planTrust(ctx, registry, caPEM, plan, warn)
	if o.Browsers {
		s.planBrowsers(registry, plan, warn)
	}

	// credentials
	owner := ""
	if s.User.Sudo {
		owner = ", owned by " + s.User.Name
	}
	plan(StepCredentials, "credential", "store the client credential for %s in %s (0600%s)", registry, s.CredentialsPath, owner)
	if s.User.Sudo && s.CredentialsPath != "" {
		if err := credhelper.CheckPath(s.CredentialsPath, s.User.fileOptions()...); err != nil {
			warn(StepCredentials, "credential", "join would refuse before spending the token: %v", err)
		}
	}
	plan(StepCredentials, "docker config", "set credHelpers[%q] = %q in %s (other keys kept; a credsStore is added only if the config configures no credentials at all)", registry, HelperName, s.Docker.Path())
	if err := s.Docker.Check(); err != nil {
		warn(StepCredentials, "docker config", "join would refuse before spending the token: %v", err)
	}

	// mirror
	for _, reg := range o.Mirrors {
		port := o.MirrorPort
		if port == 0 {
			port = DefaultMirrorPort
		}
		url := "https://" + net.JoinHostPort(host, strconv.Itoa(port))
		found := s.DetectRuntimes()
		if slices.Contains(found, trust.Docker) && s.GOOS == "linux" && reg == "docker.io" {
			plan("mirror", "docker", "add %s to registry-mirrors in %s (other keys kept) and reload dockerd (SIGHUP, no restart)", url, Rooted(s.GOOS, s.Root, dockerDaemonJSON))
		}
		if slices.Contains(found, trust.Containerd) && s.RuntimePaths.Containerd != "" {
			plan("mirror", "containerd", "put %s first in %s (pull, resolve)", url, Rooted(s.GOOS, s.Root, s.RuntimePaths.Containerd+"/"+reg+"/hosts.toml"))
		}
		if slices.Contains(found, trust.K3s) && s.RuntimePaths.K3sConfig != "" {
			plan("mirror", "k3s", "put %s first in mirrors.%q.endpoint of %s (k3s reads it when it starts)", url, reg, Rooted(s.GOOS, s.Root, s.RuntimePaths.K3sConfig))
		}
		if slices.Contains(found, trust.Containers) && s.RuntimePaths.Containers != "" {
			plan("mirror", "containers", "write a registries.conf.d drop-in making %s the mirror of %s", url, reg)
		}
	}

	// verify
	if _, err := s.Helper.Find(); err != nil {
		warn(StepVerify, "helper", "%s is not on PATH: %s", HelperCommand, helperInstallFix)
	}
	roots := "the system trust store"
	if !IsLiveRoot(s.Root) {
		roots = "the trust bundle under " + s.Root
	}
	plan(StepVerify, "verify", "check that %s resolves to %s, TLS to %s verifies with %s, %s get returns the credential, and GET /v2/ accepts it", host, ipText, registry, roots, HelperCommand)
	res.Steps = rep.events
	return res, nil
}

func (s *System) planTrust(ctx context.Context, registry string, caPEM []byte, plan, warn func(step, item, format string, args ...any)) {
	name := TrustName(registry)
	_, kind, err := s.OpenTrust("")
	if err != nil {
		warn(StepTrust, "trust store", "join would stop here: %v", err)
	} else if sp, err := trust.PlanStore(kind, s.Root, name, caPEM); err != nil {
		warn(StepTrust, "trust store", "join would stop here: %v", err)
	} else {
		if sp.File != "" {
			plan(StepTrust, "trust store", "write %s (%s)", sp.File, kind)
		}
		for _, c := range sp.Install {
			plan(StepTrust, "trust store", "run %s", strings.Join(c, " "))
		}
		for _, a := range sp.Actions {
			plan(StepTrust, "trust store", "%s", a)
		}
		for _, n := range sp.Notes {
			warn(StepTrust, "trust store", "%s", n)
		}
	}
	if _, err := s.preflightTrust(ctx, nil, caPEM); err != nil {
		warn(StepTrust, "trust store", "join would stop before the bootstrap: %v", err)
	}
	found := s.DetectRuntimes()
	var absent []string
	for _, rt := range trust.AllRuntimes() {
		if !slices.Contains(found, rt) {
			absent = append(absent, string(rt))
		}
	}
	if len(found) > 0 {
		rp, err := trust.PlanRuntimes(s.RuntimePaths, registry, caPEM, found)
		if err != nil {
			warn(StepTrust, "runtimes", "join would stop here: %v", err)
		} else {
			for _, f := range rp.Files {
				plan(StepTrust, string(f.Runtime), "write %s", Rooted(s.GOOS, s.Root, f.Path))
			}
			if rp.K3s != nil {
				plan(StepTrust, string(trust.K3s), "add configs.%q.tls.ca_file: %s to %s", registry, rp.K3s.CAFile, Rooted(s.GOOS, s.Root, rp.K3s.Path))
			}
			for _, n := range rp.Notices {
				plan(StepTrust, "restart", "%s", n)
			}
		}
	}
	if len(absent) > 0 {
		rep := "not present: " + strings.Join(absent, ", ")
		plan(StepTrust, "runtimes", "%s", rep)
	}
}

// planDeviceChecks runs the checks of Join's bootstrap that need no join
// answer: the CA's constraints and the certificate's registry host.
func planDeviceChecks(base *url.URL, caPEM []byte, host string, allowUnconstrained bool, allowDomains []string) error {
	der, _, err := ParseCAPEM(caPEM)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	var ips []netip.Addr
	if a, err := netip.ParseAddr(base.Hostname()); err == nil {
		ips = append(ips, a.Unmap())
	}
	if _, err := CheckDeviceCA(ca, ips, allowUnconstrained, allowDomains); err != nil {
		return err
	}
	if host != placeholderHost {
		if err := CheckOwnName(host); err != nil {
			return fmt.Errorf("%w: registry host: %w", ErrUntrustedDevice, err)
		}
	}
	return nil
}
