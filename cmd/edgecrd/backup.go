package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgecr/edgecr/server"
	"github.com/spf13/cobra"
)

func newBackupCmd(std streams) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "backup -o FILE",
		Short: "Write the device (state, CA, identities, tokens, registry) to a tar.gz; safe while serve runs",
		Long: `backup writes everything the device is to one archive: device.json, the CA and server
certificate with their keys, identities and tokens, admin.password, and the registry's
storage, with a SHA-256 of every file. FILE ending in .tar is not compressed; - is stdout.

It runs next to serve without stopping it: it reads tags, then manifest and layer links,
then blobs, so that whatever a tag in the archive names is in it too, and holds off garbage
collection meanwhile. Pushes that finish during the backup may be missing from it. The
archive holds the CA key and the admin password: keep it as safe as the data dir.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output == "" {
				return fmt.Errorf("missing -o FILE (or -o - for stdout)")
			}
			if loc, err := storageLocation(cmd); err != nil || loc != nil {
				return errors.Join(err, errNoBucketBackup)
			}
			st, err := server.Load(dataDir(cmd))
			if err != nil {
				return err
			}
			compress := !strings.HasSuffix(output, ".tar")
			var rep *server.BackupReport
			msg := std.Out
			if output == "-" {
				msg = std.Err
				rep, err = st.Backup(cmd.Context(), std.Out, compress, time.Now())
			} else {
				rep, err = backupToFile(cmd, st, output, compress)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(msg, "Backed up %s (CA %s): %d files, %d bytes, %d tags", rep.Host, rep.CAFingerprint, rep.Files, rep.Bytes, rep.Tags)
			if output != "-" {
				fmt.Fprintf(msg, " to %s", output)
			}
			fmt.Fprintln(msg)
			if len(rep.Dropped) > 0 {
				fmt.Fprintf(msg, "Left out, deleted while the backup ran: %s\n", strings.Join(rep.Dropped, ", "))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "archive to write (.tar.gz, or .tar uncompressed; - for stdout)")
	return cmd
}

// backupToFile writes the archive next to file and renames it into place,
// so that a failed backup leaves no archive that looks complete.
func backupToFile(cmd *cobra.Command, st *server.State, file string, compress bool) (*server.BackupReport, error) {
	f, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("creating backup %s: %w", file, err)
	}
	defer os.Remove(f.Name()) // no-op after the rename
	rep, err := st.Backup(cmd.Context(), f, compress, time.Now())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("writing backup %s: %w", file, cerr)
	}
	if err != nil {
		return nil, err
	}
	if err := os.Rename(f.Name(), file); err != nil {
		return nil, fmt.Errorf("writing backup %s: %w", file, err)
	}
	return rep, nil
}

func newRestoreCmd(std streams) *cobra.Command {
	var ips []string
	cmd := &cobra.Command{
		Use:   "restore FILE --data-dir NEW",
		Short: "Restore a backup onto a new, empty data dir: the same device, so joined clients keep working",
		Long: `restore unpacks an archive of edgecrd backup into a data dir that does not exist or is
empty, after checking every file against the archive's SHA-256 list and every blob against
its digest; on any error nothing is left behind. The restored device has the same name, CA,
server key, identities and tokens, so clients that joined the old one keep working.
--ip gives the device new IP addresses (a new machine) and reissues the server certificate
under the same CA; clients' hosts entries then need the new address (edgecr join again).
FILE - is stdin.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var o server.RestoreOptions
			for _, s := range ips {
				ip := net.ParseIP(s)
				if ip == nil {
					return fmt.Errorf("invalid --ip %q: not an IP address", s)
				}
				o.IPs = append(o.IPs, ip)
			}
			if loc, err := storageLocation(cmd); err != nil || loc != nil {
				return errors.Join(err, errNoBucketBackup)
			}
			var in io.Reader = std.In
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("opening backup: %w", err)
				}
				defer f.Close()
				in = f
			}
			dir := dataDir(cmd)
			st, err := server.Restore(cmd.Context(), in, dir, o, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(std.Out, "Restored %s into %s\n", st.Device.Host, dir)
			printStart(std.Out, st)
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&ips, "ip", nil, "new IP address of the device (repeatable; default: the ones in the backup)")
	return cmd
}
