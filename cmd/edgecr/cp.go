package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/edgecr/edgecr/agent"
	"github.com/edgecr/edgecr/internal/textsafe"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"
)

// CpOptions are `edgecr cp`'s flags and dependencies.
type CpOptions struct {
	IO      IOStreams
	Factory *Factory
	Global  *globalFlags
	imageFlags

	Src, Dst     string
	Platform     string
	AllPlatforms bool
	NoReferrers  bool
	// ShowProgress reports whether to draw a progress bar (stderr is a
	// terminal).
	ShowProgress func() bool
}

// NewCmdCp builds `edgecr cp`.
func NewCmdCp(f *Factory, g *globalFlags, runF func(context.Context, *CpOptions) error) *cobra.Command {
	o := &CpOptions{IO: f.IO, Factory: f, Global: g, ShowProgress: func() bool { return isTerminal(f.IO.ErrOut) }}
	cmd := &cobra.Command{
		Use:   "cp SRC DST",
		Short: "Copy an image or a multi-arch index from any registry into the device",
		Long: `Copy an image or index from SRC to DST without a Docker daemon: what the vendors
document as docker pull + tag + push. Manifests are copied byte for byte, so an index
keeps its digest; blobs DST already has are not sent (and are counted). Every platform
of an index is copied (--all-platforms, the default), or with --platform only that
platform's image. The image's referrers (signatures, SBOMs, attestations that name it,
or one of its manifests, or another referrer, as their subject) are copied with it, by
the source's referrers API or its referrers tag schema (sha256-<hex> tags), and keep
their digests; --no-referrers leaves them. A progress bar shows on a terminal; otherwise cp is quiet until it
reports what it did.

References are short (tools/app:1: on the device this client joined) or full
(ecr.box1.internal:31001/tools/app:1, docker.io/library/alpine:3.20, ghcr.io/…). No
tag means :latest. SRC's credentials come from the Docker config (docker login),
a joined device's from the credential edgecr join stored; --username with
--password-stdin replaces DST's.`,
		Example: `  edgecr cp docker.io/library/alpine:3.20 tools/alpine:3.20
  edgecr cp ghcr.io/org/app:v2 tools/app:v2 --platform linux/arm64
  edgecr cp ecr.box1.internal:31001/tools/app:v2 ecr.box2.internal:31001/tools/app:v2 -o json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usageError("cp takes SRC and DST, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Src, o.Dst = args[0], args[1]
			if err := o.check(); err != nil {
				return err
			}
			if o.Platform != "" && cmd.Flags().Changed("all-platforms") && o.AllPlatforms {
				return usageError("--platform and --all-platforms exclude each other")
			}
			if o.Platform == "" && !o.AllPlatforms {
				return usageError("--all-platforms=false needs --platform os/arch[/variant]")
			}
			if o.Platform != "" {
				if _, err := parsePlatform(o.Platform); err != nil {
					return usageError("%v", err)
				}
			}
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return cpRun(cmd.Context(), o)
		},
	}
	o.add(cmd, "for DST")
	cmd.Flags().StringVar(&o.Platform, "platform", "", "copy only this platform's image of an index: os/arch[/variant] (linux/arm64, linux/arm/v7)")
	cmd.Flags().BoolVar(&o.AllPlatforms, "all-platforms", true, "copy an index with every platform (the default)")
	cmd.Flags().BoolVar(&o.NoReferrers, "no-referrers", false, "do not copy the referrers (signatures, SBOMs, attestations) of what is copied")
	return cmd
}

// parsePlatform parses os/arch[/variant].
func parsePlatform(s string) (*v1.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" || (len(parts) == 3 && parts[2] == "") {
		return nil, fmt.Errorf("--platform %q: want os/arch[/variant], e.g. linux/arm64", s)
	}
	return v1.ParsePlatform(s)
}

func cpRun(ctx context.Context, o *CpOptions) error {
	im, err := o.images(o.Factory, o.Global)
	if err != nil {
		return err
	}
	src, err := im.Reference(o.Src)
	if err != nil {
		return err
	}
	dst, err := im.Reference(o.Dst)
	if err != nil {
		return err
	}
	opts := agent.CopyOptions{NoReferrers: o.NoReferrers}
	if o.Platform != "" {
		if opts.Platform, err = parsePlatform(o.Platform); err != nil {
			return usageError("%v", err)
		}
	}
	var bar *progressBar
	if o.ShowProgress() {
		bar = &progressBar{w: textsafe.Raw(o.IO.ErrOut), now: time.Now, start: time.Now()}
		opts.Progress = bar.update
	}
	res, err := im.Copy(ctx, src, dst, opts)
	if bar != nil {
		bar.finish()
	}
	if err != nil {
		return o.hint(err, "Pushing needs the push role: join with a token made by `edgecrd token create --role push`, or use --username with --password-stdin.")
	}
	if o.Output == "json" {
		return writeJSON(o.IO.Out, res)
	}
	w := o.IO.Out
	fmt.Fprintf(w, "Copied %s\n    to %s\n", res.Source, res.Destination)
	what := mediaTypeName(res.MediaType)
	if len(res.Platforms) > 0 {
		what += ": " + strings.Join(res.Platforms, ", ")
	}
	fmt.Fprintf(w, "  digest  %s (%s)\n", res.Digest, what)
	fmt.Fprintf(w, "  blobs   %d (%s): %d copied (%s)", res.Blobs, humanBytes(res.Bytes), res.Copied, humanBytes(res.CopiedBytes))
	if res.Mounted > 0 {
		fmt.Fprintf(w, ", %d mounted from another repository", res.Mounted)
	}
	fmt.Fprintf(w, ", %d already there (skipped)\n", res.Skipped)
	if len(res.Referrers) > 0 {
		fmt.Fprintf(w, "  referrers %d: %s\n", len(res.Referrers), referrerSummary(res.Referrers))
	}
	rate := ""
	if res.Seconds > 0 && res.CopiedBytes > 0 {
		rate = fmt.Sprintf(", %.1f MB/s", float64(res.CopiedBytes)/res.Seconds/1e6)
	}
	fmt.Fprintf(w, "  time    %.2f s%s\n", res.Seconds, rate)
	return nil
}

// progressBar draws "[=====>    ]  45%  230.1 MiB / 512.0 MiB  85.3 MB/s"
// on one line of a terminal, at most ten times a second.
type progressBar struct {
	w     io.Writer
	now   func() time.Time
	start time.Time
	last  time.Time
	width int // of the last line drawn, to blank what a shorter one leaves
	done  int64
	total int64
}

const barInterval = 100 * time.Millisecond

func (b *progressBar) update(done, total int64) {
	b.done, b.total = done, total
	now := b.now()
	if b.width > 0 && now.Sub(b.last) < barInterval {
		return
	}
	b.last = now
	b.draw(now)
}

func (b *progressBar) draw(now time.Time) {
	line := renderBar(b.done, b.total, now.Sub(b.start))
	pad := ""
	if n := len([]rune(line)); n < b.width {
		pad = strings.Repeat(" ", b.width-n)
	}
	b.width = len([]rune(line))
	fmt.Fprint(b.w, "\r"+line+pad)
}

// finish draws the last state and ends the line.
func (b *progressBar) finish() {
	if b.width == 0 {
		return
	}
	b.draw(b.now())
	fmt.Fprintln(b.w)
}

func renderBar(done, total int64, elapsed time.Duration) string {
	const width = 30
	frac := 0.0
	if total > 0 {
		frac = min(1, float64(done)/float64(total))
	}
	n := int(frac * width)
	bar := strings.Repeat("=", n)
	if n < width {
		bar += ">" + strings.Repeat(" ", width-n-1)
	}
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(done) / s / 1e6
	}
	return fmt.Sprintf("[%s] %3.0f%%  %s / %s  %.1f MB/s", bar, frac*100, humanBytes(done), humanBytes(total), rate)
}

// referrerSummary is "2 application/spdx+json, 1 application/vnd.dev.cosign…".
func referrerSummary(refs []agent.ReferrerInfo) string {
	counts := make([]agent.ArtifactCount, 0, len(refs))
	for _, r := range refs {
		i := slices.IndexFunc(counts, func(c agent.ArtifactCount) bool { return c.ArtifactType == r.ArtifactType })
		if i < 0 {
			counts = append(counts, agent.ArtifactCount{ArtifactType: r.ArtifactType})
			i = len(counts) - 1
		}
		counts[i].Count++
	}
	return artifactCounts(counts)
}

// artifactCounts is "1 application/spdx+json, 2 application/vnd.example.sig"
// in the order given; a referrer without a type is "(no type)".
func artifactCounts(counts []agent.ArtifactCount) string {
	parts := make([]string, len(counts))
	for i, c := range counts {
		t := c.ArtifactType
		if t == "" {
			t = "(no type)"
		}
		parts[i] = fmt.Sprintf("%d %s", c.Count, t)
	}
	return strings.Join(parts, ", ")
}
