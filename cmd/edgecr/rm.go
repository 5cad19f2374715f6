package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// RmOptions are `edgecr rm`'s flags and dependencies.
type RmOptions struct {
	IO      IOStreams
	Factory *Factory
	Global  *globalFlags
	imageFlags

	Ref string
	Yes bool
	// Interactive reports whether the user can be asked (stdin is a
	// terminal).
	Interactive func() bool
}

// NewCmdRm builds `edgecr rm`.
func NewCmdRm(f *Factory, g *globalFlags, runF func(context.Context, *RmOptions) error) *cobra.Command {
	o := &RmOptions{IO: f.IO, Factory: f, Global: g, Interactive: func() bool { return isTerminal(f.IO.In) }}
	cmd := &cobra.Command{
		Use:   "rm REPO:TAG | REPO@DIGEST",
		Short: "Delete an image or index from a registry",
		Long: `Delete a manifest as the device vendors document it, in one command: list the
repository's tags, HEAD the manifest (Accept: Docker v2 manifest and manifest list,
OCI manifest and index) for its Docker-Content-Digest, and DELETE it by digest.
Every tag that points at that digest goes with it: rm names them, and names the
tagged indexes that list it as a platform, then asks before it deletes (--yes does
not ask; without a terminal, --yes is required). The device reclaims the space at
its next garbage collection (nightly, or at once with ` + "`edgecrd gc`" + `).

An edgecr device lets its admin role delete, no other: a client joined with the push
role is refused. Delete as the admin with --username admin --password-stdin (the
password: ` + "`edgecrd info`" + ` on the device); it is used for this command only,
never stored.`,
		Example: `  edgecr rm tools/busybox:1
  edgecr rm ecr.box1.internal:31001/tools/busybox@sha256:0123… --yes
  edgecr rm tools/busybox:1 --yes --username admin --password-stdin < admin-password`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("rm takes exactly one REPO:TAG or REPO@DIGEST, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Ref = args[0]
			if err := o.check(); err != nil {
				return err
			}
			if o.PasswordStdin && !o.Yes {
				return usageError("--password-stdin takes standard input, so rm cannot ask for confirmation: add --yes")
			}
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return rmRun(cmd.Context(), o)
		},
	}
	o.add(cmd, "to delete")
	cmd.Flags().BoolVarP(&o.Yes, "yes", "y", false, "delete without asking")
	return cmd
}

const deniedDeleteHint = "Deleting needs the device's admin role: add --yes --username admin --password-stdin " + adminPasswordHint + "."

func rmRun(ctx context.Context, o *RmOptions) error {
	im, err := o.images(o.Factory, o.Global)
	if err != nil {
		return err
	}
	ref, err := im.TagOrDigest(o.Ref)
	if err != nil {
		return err
	}
	plan, err := im.PlanRemove(ctx, ref)
	if err != nil {
		return imageHint(err, "")
	}
	// The plan goes where the user reads it: stdout, or stderr when stdout
	// carries JSON.
	info := o.IO.Out
	if o.Output == "json" {
		info = o.IO.ErrOut
	}
	fmt.Fprintf(info, "Deleting %s@%s (%s)\n", plan.Repository, plan.Digest, mediaTypeName(plan.MediaType))
	if len(plan.Tags) > 0 {
		fmt.Fprintf(info, "  tags deleted with it: %s\n", strings.Join(plan.Tags, ", "))
	} else {
		fmt.Fprintln(info, "  no tag points at it")
	}
	for _, by := range plan.ReferencedBy {
		fmt.Fprintf(info, "  ! index %s lists it as a platform: that tag will no longer pull completely\n", by)
	}
	if !o.Yes {
		if err := confirm(o.IO.In, o.IO.ErrOut, o.Interactive(), "Delete it? [y/N] "); err != nil {
			if errors.Is(err, errDeclined) {
				fmt.Fprintln(info, "Nothing deleted.")
				return nil
			}
			return err
		}
	}
	if err := im.Remove(ctx, plan); err != nil {
		return imageHint(err, deniedDeleteHint)
	}
	if o.Output == "json" {
		return writeJSON(o.IO.Out, plan)
	}
	fmt.Fprintf(o.IO.Out, "Deleted %s@%s.\n", plan.Repository, plan.Digest)
	fmt.Fprintln(o.IO.Out, "The device reclaims the space at its next garbage collection (nightly, or at once with `edgecrd gc` on the device).")
	return nil
}

var errDeclined = errors.New("declined")

// confirm asks question on out and reads the answer from in: "y" or "yes"
// go on, anything else is errDeclined. When in is not a terminal nothing
// is asked and it refuses.
func confirm(in io.Reader, out io.Writer, interactive bool, question string) error {
	if !interactive {
		return errors.New("refusing to delete without confirmation: standard input is not a terminal; add --yes to delete without asking")
	}
	fmt.Fprint(out, question)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading the answer: %w", err)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errDeclined
}
