package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgecr/edgecr/server"
	"github.com/spf13/cobra"
)

// infoJSON is the contract of `edgecrd info -o json`.
type infoJSON struct {
	Endpoint      string   `json:"endpoint"`
	IPAddress     string   `json:"ipAddress"`
	IPAddresses   []string `json:"ipAddresses"`
	Username      string   `json:"username"`
	Password      string   `json:"password"`
	CAFile        string   `json:"caFile"`
	CAFingerprint string   `json:"caFingerprint"`

	StorageUsedBytes     int64      `json:"storageUsedBytes"`
	QuotaBytes           int64      `json:"quotaBytes"` // 0: no quota
	LastGC               *time.Time `json:"lastGC"`     // when the last collection finished; null: never
	LastGCReclaimedBytes int64      `json:"lastGCReclaimedBytes"`

	// Replicas are the replicas registered in a bucket's state (absent
	// for a data dir on local disk).
	Replicas []replicaJSON       `json:"replicas,omitempty"`
	Sync     []server.RuleStatus `json:"sync,omitempty"` // the sync rules' last runs
}

// pad aligns a sync line's text with the other lines' values.
func pad(rule string) string {
	if n := 10 - len(rule); n > 0 {
		return strings.Repeat(" ", n)
	}
	return " "
}

// replicaJSON is one replica in `edgecrd info -o json`.
type replicaJSON struct {
	ID                  string    `json:"id"`
	Addresses           []string  `json:"addresses"`
	Port                int       `json:"port"`
	Version             string    `json:"version,omitempty"`
	Hostname            string    `json:"hostname,omitempty"`
	Started             time.Time `json:"started"`
	Heartbeat           time.Time `json:"heartbeat"`
	HeartbeatAgeSeconds float64   `json:"heartbeatAgeSeconds"`
	Live                bool      `json:"live"`
	Healthy             bool      `json:"healthy"`
	Problem             string    `json:"problem,omitempty"`
}

// replicaInfo lists the replicas of st's bucket and probes each one's
// /healthz (server.ProbeTimeout each, in parallel).
func replicaInfo(ctx context.Context, st *server.State, now time.Time) ([]replicaJSON, error) {
	rs, err := server.ListReplicas(ctx, st.KV())
	if err != nil {
		return nil, err
	}
	out := []replicaJSON{}
	for _, h := range server.ProbeReplicas(ctx, st.CA.Cert, st.Device.Host, rs, now) {
		out = append(out, replicaJSON{
			ID: h.ID, Addresses: h.IPs, Port: h.Port, Version: h.Version, Hostname: h.Hostname,
			Started: h.Started, Heartbeat: h.Heartbeat, HeartbeatAgeSeconds: now.Sub(h.Heartbeat).Round(time.Second).Seconds(),
			Live: h.Live, Healthy: h.Healthy, Problem: h.Problem,
		})
	}
	return out, nil
}

// writeReplicas prints the replica table of `edgecrd info`.
func writeReplicas(w io.Writer, rs []replicaJSON) {
	fmt.Fprintf(w, "\nReplicas (live: heartbeat within %s):\n", server.ReplicaLiveFor)
	if len(rs) == 0 {
		fmt.Fprintln(w, "  none registered")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tAddresses\tHeartbeat\tLive\tHealth")
	for _, r := range rs {
		live, health := "yes", "ok"
		if !r.Live {
			live = "no"
		}
		if !r.Healthy {
			health = "unreachable: " + r.Problem
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s ago\t%s\t%s\n", r.ID, strings.Join(r.Addresses, ","),
			time.Duration(r.HeartbeatAgeSeconds)*time.Second, live, health)
	}
	tw.Flush()
}

func newInfoCmd(io streams) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Show the registry endpoint, IP address, admin credential and CA fingerprint",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" && output != "table" {
				return fmt.Errorf("unknown output format %q (want table or json)", output)
			}
			st, err := loadState(cmd)
			if err != nil {
				return err
			}
			pw, err := st.AdminPassword()
			if err != nil {
				return err
			}
			info := infoJSON{
				Endpoint:      st.Device.Endpoint(),
				IPAddresses:   st.Device.IPs,
				Username:      server.AdminUser,
				Password:      pw,
				CAFile:        st.CAFile(),
				CAFingerprint: st.CA.Fingerprint(),
			}
			if info.StorageUsedBytes, err = st.StorageUsed(cmd.Context()); err != nil {
				return err
			}
			info.QuotaBytes = st.Device.QuotaBytes
			last, err := st.LastGC()
			if err != nil {
				return err
			}
			if last != nil {
				info.LastGC = &last.Finished
				info.LastGCReclaimedBytes = last.ReclaimedBytes
			}
			if info.Sync, err = st.LastSync(); err != nil {
				return err
			}
			if st.S3() != nil && st.KV() != nil {
				if info.Replicas, err = replicaInfo(cmd.Context(), st, time.Now()); err != nil {
					return err
				}
			}
			if info.IPAddresses == nil {
				info.IPAddresses = []string{}
			}
			if len(st.Device.IPs) > 0 {
				info.IPAddress = st.Device.IPs[0]
			}
			if output == "json" {
				enc := json.NewEncoder(io.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			}
			tw := tabwriter.NewWriter(io.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "Endpoint\tIPAddress\tUsername\tPassword")
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", info.Endpoint, strings.Join(info.IPAddresses, ","), info.Username, info.Password)
			tw.Flush()
			fmt.Fprintf(io.Out, "\nCA fingerprint: %s\nCA file:        %s\n", info.CAFingerprint, info.CAFile)
			quota := "no quota"
			if info.QuotaBytes > 0 {
				quota = fmt.Sprintf("of %s quota (%d%%)", server.FormatSize(info.QuotaBytes), info.StorageUsedBytes*100/info.QuotaBytes)
			}
			fmt.Fprintf(io.Out, "Storage:        %s used, %s\n", server.FormatSize(info.StorageUsedBytes), quota)
			if info.LastGC != nil {
				fmt.Fprintf(io.Out, "Last GC:        %s, reclaimed %s\n", info.LastGC.Local().Format(time.RFC3339), server.FormatSize(info.LastGCReclaimedBytes))
			} else {
				fmt.Fprintf(io.Out, "Last GC:        never\n")
			}
			for _, r := range info.Sync {
				fmt.Fprintf(io.Out, "Sync %s:%s last run %s: %d copied (%s), %d skipped, %d failed", r.Rule, pad(r.Rule), r.LastRun.Local().Format(time.RFC3339), r.Copied, server.FormatSize(r.Bytes), r.Skipped, r.Failed)
				if !r.NextRun.IsZero() {
					fmt.Fprintf(io.Out, "; next %s", r.NextRun.Local().Format(time.RFC3339))
				}
				if r.LastError != "" {
					fmt.Fprintf(io.Out, "; error: %s", r.LastError)
				}
				fmt.Fprintln(io.Out)
			}
			if info.Replicas != nil {
				writeReplicas(io.Out, info.Replicas)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}
