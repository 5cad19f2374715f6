package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/edgecr/edgecr/agent"

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
	// Image deletes the manifest a tag points at, with every tag on it,
	// rather than the tag alone.
	Image bool
	// Now is the clock the space note reads.
	Now func() time.Time
	// Interactive reports whether the user can be asked (stdin is a
	// terminal).
	Interactive func() bool
}

// NewCmdRm builds `edgecr rm`.
func NewCmdRm(f *Factory, g *globalFlags, runF func(context.Context, *RmOptions) error) *cobra.Command {
	o := &RmOptions{IO: f.IO, Factory: f, Global: g, Interactive: func() bool { return isTerminal(f.IO.In) }, Now: time.Now}
	cmd := &cobra.Command{
		Use:   "rm REPO:TAG | REPO@DIGEST | --image REPO:TAG",
		Short: "Delete a tag, or an image with all its tags, from a registry",
		Long: `rm REPO:TAG deletes that tag only, as the device's web UI does: the image stays
if another tag points at it, and stays pullable by digest until a garbage
collection with --delete-untagged removes it.

rm REPO@DIGEST (or rm --image REPO:TAG) deletes the image itself, as the device
vendors document it: list the repository's tags, HEAD the manifest (Accept: Docker
v2 manifest and manifest list, OCI manifest and index) for its Docker-Content-Digest,
and DELETE it by digest. Every tag that points at that digest goes with it.

rm first checks that the credential may delete, then names what goes (and the
tagged indexes that list the image as a platform) and asks (--yes does not ask;
without a terminal, --yes is required). The space comes back at the device's
garbage collection, which spares what was used within its grace period (1h by
default); rm says when, and how to reclaim it at once.

An edgecr device lets its admin role delete, no other: a client joined with the push
role is refused. Delete as the admin with --username admin --password-stdin (the
password: ` + "`edgecrd info`" + ` on the device); it is used for this command only,
never stored.`,
		Example: `  edgecr rm tools/busybox:1                       # the tag only
  edgecr rm --image tools/busybox:1               # the image and every tag on it
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
			if o.Image && strings.Contains(o.Ref, "@") {
				return usageError("--image is for REPO:TAG: REPO@DIGEST already deletes the image")
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
	cmd.Flags().BoolVar(&o.Image, "image", false, "with REPO:TAG: delete the image the tag points at, with every tag on it")
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
	// A credential that may not delete hears so before rm says what it
	// would delete.
	if err := im.CheckDelete(ctx, ref.Context()); err != nil {
		return o.hint(err, deniedDeleteHint)
	}
	plan, err := im.PlanRemove(ctx, ref, o.Image)
	if err != nil {
		return o.hint(err, "")
	}
	// The plan goes where the user reads it: stdout, or stderr when stdout
	// carries JSON.
	info := o.IO.Out
	if o.Output == "json" {
		info = o.IO.ErrOut
	}
	question := "Delete it? [y/N] "
	if plan.Tag != "" {
		fmt.Fprintf(info, "Deleting the tag %s:%s (%s, %s)\n", plan.Repository, plan.Tag, plan.Digest, mediaTypeName(plan.MediaType))
		if others := plan.OtherTags(); len(others) > 0 {
			fmt.Fprintf(info, "  the image stays: also tagged %s\n", strings.Join(others, ", "))
		} else {
			fmt.Fprintf(info, "  no other tag points at the image: it stays, untagged, pullable by digest (rm %s@%s deletes it)\n", plan.Repository, plan.Digest)
		}
		question = "Delete the tag? [y/N] "
	} else {
		fmt.Fprintf(info, "Deleting %s@%s (%s)\n", plan.Repository, plan.Digest, mediaTypeName(plan.MediaType))
		if len(plan.Tags) > 0 {
			fmt.Fprintf(info, "  tags deleted with it: %s\n", strings.Join(plan.Tags, ", "))
		} else {
			fmt.Fprintln(info, "  no tag points at it")
		}
		for _, by := range plan.ReferencedBy {
			fmt.Fprintf(info, "  ! index %s lists it as a platform: that tag will no longer pull completely\n", by)
		}
	}
	if !o.Yes {
		if err := confirm(o.IO.In, o.IO.ErrOut, o.Interactive(), question); err != nil {
			if errors.Is(err, errDeclined) {
				fmt.Fprintln(info, "Nothing deleted.")
				return nil
			}
			return err
		}
	}
	if err := im.Remove(ctx, plan); err != nil {
		return o.hint(err, deniedDeleteHint)
	}
	if o.Output == "json" {
		return writeJSON(o.IO.Out, plan)
	}
	if plan.Tag != "" {
		fmt.Fprintf(o.IO.Out, "Deleted the tag %s:%s.\n", plan.Repository, plan.Tag)
	} else {
		fmt.Fprintf(o.IO.Out, "Deleted %s@%s.\n", plan.Repository, plan.Digest)
	}
	fmt.Fprintln(o.IO.Out, spaceNote(plan, o.Now()))
	return nil
}

// spaceNote says what happens to the space after a deletion, as the
// device's garbage collection behaves (server.CollectGarbage): blobs no
// manifest references go once unused for the grace period (1h by default;
// rm itself just read the manifest), untagged manifests only with
// --delete-untagged.
func spaceNote(p *agent.RemovePlan, now time.Time) string {
	after := now.Add(defaultGCGrace).Format("15:04 MST")
	const now0 = "(while no push is running: a shorter grace may remove what a push is about to use)"
	switch {
	case p.Tag != "" && len(p.OtherTags()) > 0:
		return "No space comes back: the image is still tagged " + strings.Join(p.OtherTags(), ", ") + "."
	case p.Tag != "":
		return "No space comes back yet: the image stays, untagged, until a garbage collection with --delete-untagged\n" +
			"removes it (scheduled ones do with `edgecrd serve --gc-delete-untagged`), the first after " + after + "\n" +
			"(the device's grace period, 1h by default, spares what was used within it). To reclaim it now, on the\n" +
			"device: `edgecrd gc --delete-untagged --grace 0s` " + now0 + "."
	}
	return "The space of its blobs that no other image uses comes back at the device's first garbage collection\n" +
		"after " + after + " at the latest (the grace period, 1h by default, spares what was used within it;\n" +
		"scheduled daily at 03:00 by default). To reclaim it now, on the device: `edgecrd gc --grace 0s`\n" + now0 + "."
}

// defaultGCGrace is the device's default grace period (server.DefaultGCGrace;
// the client does not import the server).
const defaultGCGrace = time.Hour

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
