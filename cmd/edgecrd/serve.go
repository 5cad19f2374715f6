package main

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/edgecr/edgecr/server"
	"github.com/edgecr/edgecr/server/mirror"
	"github.com/spf13/cobra"
)

// minScheduledGrace keeps scheduled collections well clear of the
// server's mtime refresh interval (a minute), which their safety relies on.
const minScheduledGrace = 2 * time.Minute

// serveFlags are serve's own flags, next to the ones it shares with init.
type serveFlags struct {
	logFormat        string
	quota            string
	gcSchedule       string
	gcGrace          time.Duration
	gcDeleteUntagged bool
	distDir          string
	uiListen         string
	uiIdle           time.Duration
	replicaID        string
	syncConfig       string
	syncRate         string
}

// syncOptions reads --sync-config and --sync-rate (nil: no sync).
func (f *serveFlags) syncOptions() (*mirror.Config, int64, error) {
	rate, err := mirror.ParseRate(f.syncRate)
	if err != nil {
		return nil, 0, fmt.Errorf("--sync-rate: %w", err)
	}
	if f.syncConfig == "" {
		return nil, rate, nil
	}
	c, err := mirror.Load(f.syncConfig)
	return c, rate, err
}

// parseQuota reads --quota: a size, or 0/off/none for no quota.
func parseQuota(s string) (int64, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "off", "none", "unlimited":
		return 0, nil
	}
	n, err := server.ParseSize(s)
	if err != nil {
		return 0, fmt.Errorf("--quota: %w", err)
	}
	return n, nil
}

// check validates the flag combination and returns the parsed schedule.
func (f *serveFlags) check(cmd *cobra.Command, o *server.InitOptions) (server.GCSchedule, error) {
	if f.logFormat != "json" && f.logFormat != "text" {
		return server.GCSchedule{}, fmt.Errorf("unknown --log-format %q (want json or text)", f.logFormat)
	}
	if cmd.Flags().Changed("quota") {
		q, err := parseQuota(f.quota)
		if err != nil {
			return server.GCSchedule{}, err
		}
		o.Quota = &q
	}
	sched, err := server.ParseGCSchedule(f.gcSchedule)
	if err != nil {
		return server.GCSchedule{}, fmt.Errorf("--gc-schedule: %w", err)
	}
	if f.uiIdle < time.Minute {
		return server.GCSchedule{}, fmt.Errorf("--ui-idle-timeout %s: must be at least 1m", f.uiIdle)
	}
	switch strings.ToLower(f.uiListen) {
	case "off", "none", "":
		f.uiListen = ""
	}
	if f.replicaID != "" {
		if err := server.CheckReplicaID(f.replicaID); err != nil {
			return server.GCSchedule{}, fmt.Errorf("--replica-id: %w", err)
		}
	}
	if f.gcGrace < minScheduledGrace {
		return server.GCSchedule{}, fmt.Errorf("--gc-grace %s: must be at least %s, so that a collection never removes what a push running at the time is about to reference", f.gcGrace, minScheduledGrace)
	}
	return sched, nil
}

func newServeCmd(io streams) *cobra.Command {
	var f initFlags
	var sf serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the registry (creating the device's state on first start)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := f.options(cmd)
			if err != nil {
				return err
			}
			sched, err := sf.check(cmd, &o)
			if err != nil {
				return err
			}
			syncCfg, syncRate, err := sf.syncOptions() // validated before anything starts
			if err != nil {
				return err
			}
			var h slog.Handler = slog.NewJSONHandler(io.Err, nil)
			if sf.logFormat == "text" {
				h = slog.NewTextHandler(io.Err, nil)
			}
			log := slog.New(h)
			loc, err := storageLocation(cmd)
			if err != nil {
				return err
			}
			var st *server.State
			var replicaIPs []net.IP
			if loc != nil {
				// On a bucket serve's --ip are this replica's own addresses
				// (default: the machine's), registered apart from the
				// device's: they become device.json's only when this
				// replica creates the device.
				if replicaIPs = o.IPs; len(replicaIPs) == 0 {
					if replicaIPs, err = server.DetectIPs(); err != nil {
						return fmt.Errorf("detecting this replica's addresses (give --ip): %w", err)
					}
				}
				ips := replicaIPs
				o.IPs, o.DefaultIPs = nil, func() ([]net.IP, error) { return ips, nil }
				// Replicas share the bucket: no lock, and nothing on local disk.
				st, err = ensureShared(cmd, loc, o)
			} else {
				// One serve per data dir, held until the process exits: a
				// second one stops here, before its flags could rewrite
				// device.json.
				lock, lerr := server.LockDataDir(dataDir(cmd), "serve")
				if lerr != nil {
					return lerr
				}
				defer lock.Unlock()
				st, err = server.Ensure(dataDir(cmd), o, time.Now())
			}
			if err != nil {
				return err
			}
			listen := f.listen
			if !cmd.Flags().Changed("listen") {
				// The port clients were given is the one in device.json
				// (set by init --listen); listen there on every address.
				listen = fmt.Sprintf(":%d", st.Device.Port)
			}
			srv, err := server.New(cmd.Context(), st, server.Options{
				Listen: listen, Logger: log,
				GCSchedule: sched, GCGrace: sf.gcGrace, GCDeleteUntagged: sf.gcDeleteUntagged,
				DistDir:  sf.distDir,
				UIListen: sf.uiListen, UIIdleTimeout: sf.uiIdle, Version: versionString(),
				// The default address may be taken: then the registry still runs.
				UIOptional: !cmd.Flags().Changed("ui-listen"),
				ReplicaIPs: replicaIPs, ReplicaID: sf.replicaID,
				Sync: syncCfg, SyncRate: syncRate,
			})
			if err != nil {
				return err
			}
			printStart(io.Out, st)
			if a, ok := srv.UIAddr().(*net.TCPAddr); ok {
				host := a.IP.String()
				if a.IP.IsUnspecified() { // every address: name one a browser can use
					host = st.Device.Host
					if len(st.Device.IPs) > 0 {
						host = st.Device.IPs[0]
					}
				}
				fmt.Fprintf(io.Out, "Web UI:            https://%s/ (log in as %s)\n", net.JoinHostPort(host, strconv.Itoa(a.Port)), server.AdminUser)
			}
			return srv.Serve(cmd.Context())
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&sf.logFormat, "log-format", "json", "log format: json or text")
	fl.StringVar(&sf.quota, "quota", "", "storage quota, e.g. 40GiB or 500MB (0 or off: none); kept in the data dir until changed")
	fl.StringVar(&sf.gcSchedule, "gc-schedule", server.DefaultGCSchedule,
		"when to collect garbage: off, daily@HH:MM, weekly@DAY@HH:MM (mon…sun) or every@DURATION; device local time")
	fl.DurationVar(&sf.gcGrace, "gc-grace", server.DefaultGCGrace, "scheduled collections never remove content younger than this")
	fl.BoolVar(&sf.gcDeleteUntagged, "gc-delete-untagged", false, "scheduled collections also remove manifests no tag reaches")
	fl.StringVar(&sf.distDir, "dist-dir", "",
		"serve the agent binaries in this dir (edgecr-<os>-<arch>[.exe], docker-credential-edgecr-<os>-<arch>[.exe]) at /dist/ for /install.sh and /install.ps1")
	fl.StringVar(&sf.uiListen, "ui-listen", "127.0.0.1:8443",
		"address of the web UI (HTTPS with the device CA; admin login); off: no UI. Loopback by default: reach it over an SSH tunnel, or give e.g. :8443")
	fl.StringVar(&sf.replicaID, "replica-id", "",
		"with --storage: this replica's name in the shared state (default: its first --ip, stable across restarts)")
	fl.StringVar(&sf.syncConfig, "sync-config", "", "sync configuration (YAML): upstreams, rules run on their schedules, pull-through prefixes")
	fl.StringVar(&sf.syncRate, "sync-rate", "off", "bandwidth per upstream for sync and pull-through, e.g. 2MiB/s; off: none")
	fl.DurationVar(&sf.uiIdle, "ui-idle-timeout", server.DefaultUIIdleTimeout, "log a web UI session out after this long without a request")
	return cmd
}
