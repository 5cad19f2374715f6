package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/edgecr/edgecr/agent"
	"github.com/spf13/cobra"
)

// crashEnv names the test hook: EDGECR_TEST_CRASH_AFTER=<step> makes
// `edgecr join` SIGKILL itself right after that step's state is saved, so
// that end-to-end tests can prove a rerun (or leave) after a crash
// converges. Steps: bootstrap, hosts, trust, credentials, verify.
const crashEnv = "EDGECR_TEST_CRASH_AFTER"

// JoinOptions are `edgecr join`'s flags and dependencies.
type JoinOptions struct {
	IO      IOStreams
	Factory *Factory
	Global  *globalFlags

	URL    string
	Token  string
	Name   string
	Root   string
	DryRun bool
	Output string
	// Browsers also adds the CA to the user's browsers' NSS databases.
	Browsers bool
	// AllowUnconstrainedCA and ReplaceCredentials are the flags of the
	// same names (agent.JoinOptions).
	AllowUnconstrainedCA bool
	ReplaceCredentials   bool
	AllowDomains         []string
	// Mirrors and MirrorPort: --mirror, --mirror-port.
	Mirrors    []string
	MirrorPort int
}

// NewCmdJoin builds `edgecr join`; runF replaces the run (tests capture the
// parsed options).
func NewCmdJoin(f *Factory, g *globalFlags, runF func(context.Context, *JoinOptions) error) *cobra.Command {
	o := &JoinOptions{IO: f.IO, Factory: f, Global: g}
	cmd := &cobra.Command{
		Use:   "join URL --token TOKEN",
		Short: "Join this machine to a device's registry",
		Long: `Join this machine to the registry of the device at URL (https://<device IP>:31001),
using a join token made on the device with ` + "`edgecrd token create`" + `:

  1. bootstrap    connect, check the device CA against the token's pin before sending
                  anything secret, and trade the token for this client's credential
  2. hosts        map the registry host to the device IP in the hosts file
  3. trust        put the device CA into the OS trust store and every container runtime
                  (with --browsers, also into the user's browsers' NSS databases)
  4. credentials  store the credential for docker-credential-edgecr, and point
                  Docker's config.json at that helper for the registry
  5. verify       the name resolves, TLS verifies, the registry accepts the credential

Each step is idempotent and reported; a failure undoes the earlier ones. Joining
again re-converges without spending the token while the credential still works.
Changing the hosts file and the trust store needs root; under sudo, the Docker
config and credential are those of the user who ran sudo.

--token - reads the token from standard input (keeps it out of shell history).

--browsers: on Linux, Chromium and Firefox do not read the OS trust store but NSS
databases in the user's home (~/.pki/nssdb, every Firefox profile, snap and
Flatpak ones too). With --browsers, join adds the CA to each with certutil
(libnss3-tools), under sudo as the user who ran sudo; leave removes it from the
databases join added it to, and status checks them.`,
		Example: `  sudo edgecr join https://198.18.0.2:31001 --token edgecr1.<pin>.<id>.<secret>
  sudo edgecr join https://198.18.0.2:31001 --token - --browsers < token.txt
  edgecr join https://198.18.0.2:31001 --token - --dry-run < token.txt
  edgecr join https://127.0.0.1:31001 --token "$TOKEN" --root /tmp/img -o json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("join takes exactly one URL, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.URL = args[0]
			if err := o.complete(); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return joinRun(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.Token, "token", "", "join token from `edgecrd token create` (\"-\": read it from stdin)")
	cmd.Flags().StringVar(&o.Name, "name", "", "this client's name on the device (default: the host name)")
	cmd.Flags().StringVar(&o.Root, "root", "", "system root: put every system path (hosts file, trust store, runtime configuration, state) under DIR")
	cmd.Flags().BoolVar(&o.Browsers, "browsers", false, "also trust the device CA in this user's browsers (Chromium, Firefox NSS databases; needs certutil)")
	cmd.Flags().StringSliceVar(&o.AllowDomains, "allow-domain", nil, "accept a device whose CA is constrained to this zone in the public DNS (e.g. corp.example.com); private zones such as .internal need nothing")
	cmd.Flags().BoolVar(&o.AllowUnconstrainedCA, "allow-unconstrained-ca", false, "accept a device CA without name constraints (an edgecrd too old to make them); the registry host is still checked")
	cmd.Flags().BoolVar(&o.ReplaceCredentials, "replace-credentials", false, "replace another tool's credHelpers entry for the registry in Docker's config.json (leave puts it back)")
	cmd.Flags().StringArrayVar(&o.Mirrors, "mirror", nil, "make the device this machine's mirror of a registry (docker.io, quay.io, ...; repeatable): containerd hosts.toml, podman registries.conf.d, and Docker's registry-mirrors for docker.io (live reload, no restart); the device serves it on its mirror port")
	cmd.Flags().IntVar(&o.MirrorPort, "mirror-port", agent.DefaultMirrorPort, "the port of the device's mirror listener (its sync configuration's mirror.listen)")
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "print the plan and change nothing (the token is not spent; the CA pin is checked)")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "text", "output format: text or json")
	return cmd
}

// complete checks the flags together and fills in defaults.
func (o *JoinOptions) complete() error {
	if err := checkOutput(o.Output); err != nil {
		return err
	}
	if o.Token == "-" {
		line, err := bufio.NewReader(o.IO.In).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading the token from stdin: %w", err)
		}
		o.Token = strings.TrimSpace(line)
	}
	if o.Token == "" {
		return usageError("--token is required (make one on the device: edgecrd token create)")
	}
	for _, m := range o.Mirrors {
		if err := agent.CheckMirrorName(m); err != nil {
			return usageError("%v", err)
		}
	}
	if o.MirrorPort < 1 || o.MirrorPort > 65535 {
		return usageError("--mirror-port %d is not a port", o.MirrorPort)
	}
	if o.Name == "" {
		if h, err := o.Factory.Hostname(); err == nil {
			o.Name = h
		}
	}
	return nil
}

// needRoot refuses, before anything is spent, a change to the live system
// by a user who cannot make it.
func needRoot(f *Factory, root, what string) error {
	if root != "" {
		return nil
	}
	if f.GOOS == "windows" {
		if f.Elevated() {
			return nil
		}
		return fmt.Errorf("edgecr %s changes the hosts file and the LocalMachine Root store, which needs an elevated prompt: "+
			"open PowerShell with Run as administrator and run edgecr %s there, or use --root DIR", what, what)
	}
	if f.Geteuid() == 0 {
		return nil
	}
	return fmt.Errorf("edgecr %s changes the hosts file and the system trust store: run it as root (sudo edgecr %s ...), or use --root DIR", what, what)
}

func joinRun(ctx context.Context, o *JoinOptions) error {
	f := o.Factory
	if !o.DryRun {
		if err := needRoot(f, o.Root, "join"); err != nil {
			return err
		}
	}
	if f.GOOS == "windows" && o.Root == "" {
		if cur, desk, err := f.DesktopUsers(); err == nil {
			if w := otherAccountWarning(cur, desk); w != "" {
				fmt.Fprintf(o.IO.ErrOut, "Warning: %s\n", w)
			}
		}
	}
	after, err := crashHook(f)
	if err != nil {
		return usageError("%v", err)
	}
	sys, err := f.System(o.Root, o.Global.logger(f))
	if err != nil {
		return err
	}
	// Progress goes to stdout, or to stderr when stdout carries JSON.
	progress := o.IO.Out
	if o.Output == "json" {
		progress = o.IO.ErrOut
	}
	report := func(ev agent.Event) { fmt.Fprintln(progress, ev) }
	opts := agent.JoinOptions{URL: o.URL, Token: o.Token, Name: o.Name, Browsers: o.Browsers, Report: report, AfterStep: after,
		AllowUnconstrainedCA: o.AllowUnconstrainedCA, AllowDomains: o.AllowDomains, ReplaceCredentials: o.ReplaceCredentials,
		Mirrors: o.Mirrors, MirrorPort: o.MirrorPort}

	if o.DryRun {
		fmt.Fprintf(progress, "Dry run: nothing is changed and the token is not spent.\n")
		plan, err := sys.PlanJoin(ctx, opts)
		if err != nil {
			return err
		}
		if o.Output == "json" {
			return writeJSON(o.IO.Out, plan)
		}
		fmt.Fprintf(o.IO.Out, "\nRun without --dry-run to join %s.\n", plan.Registry)
		return nil
	}

	res, err := sys.Join(ctx, opts)
	if err != nil {
		return err
	}
	if o.Output == "json" {
		return writeJSON(o.IO.Out, res)
	}
	fmt.Fprintln(o.IO.Out)
	if res.AlreadyJoined {
		fmt.Fprintf(o.IO.Out, "Already joined %s as %s (role %s); everything is in place.\n", res.Registry, res.ClientID, res.Role)
	} else {
		fmt.Fprintf(o.IO.Out, "Joined %s as %s (role %s).\n", res.Registry, res.ClientID, res.Role)
	}
	fmt.Fprintf(o.IO.Out, "  docker pull %s/<repository>:<tag>\n", res.Registry)
	for _, n := range res.Notices {
		fmt.Fprintf(o.IO.Out, "Note: %s\n", n)
	}
	fmt.Fprintln(o.IO.Out, "Check it with `edgecr status`; undo it with `edgecr leave`.")
	return nil
}

// crashHook returns the EDGECR_TEST_CRASH_AFTER hook, or nil when unset.
func crashHook(f *Factory) (func(string) error, error) {
	step := f.Getenv(crashEnv)
	if step == "" {
		return nil, nil
	}
	if !slices.Contains(agent.Steps(), step) {
		return nil, fmt.Errorf("%s=%q is not a join step (%s)", crashEnv, step, strings.Join(agent.Steps(), "|"))
	}
	return func(done string) error {
		if done != step {
			return nil
		}
		f.Crash()
		return fmt.Errorf("%s=%s: the process was not killed", crashEnv, step)
	}, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
