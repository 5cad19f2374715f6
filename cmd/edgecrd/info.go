package main

import (
	"encoding/json"
	"fmt"
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

	Sync []server.RuleStatus `json:"sync,omitempty"` // the sync rules' last runs
}

// pad aligns a sync line's text with the other lines' values.
func pad(rule string) string {
	if n := 10 - len(rule); n > 0 {
		return strings.Repeat(" ", n)
	}
	return " "
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
			if st.S3() == nil {
				info.StorageUsedBytes = server.DirSize(st.StorageDir())
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
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}
