package mirror

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// Outcome is what a run did with one image.
type Outcome string

const (
	OutcomeCopied    Outcome = "copied"
	OutcomeSkipped   Outcome = "skipped" // the device has it, by digest
	OutcomeFailed    Outcome = "failed"
	OutcomeWouldCopy Outcome = "would copy" // --dry-run
)

// Item is one image of a run.
type Item struct {
	Rule        string  `json:"rule"`
	Source      string  `json:"source"`      // upstream repo:tag
	Destination string  `json:"destination"` // device repo:tag
	Digest      string  `json:"digest,omitempty"`
	Outcome     Outcome `json:"outcome"`
	Reason      string  `json:"reason,omitempty"`
	// Blobs and Bytes were sent; BlobsPresent the device had already.
	Blobs        int   `json:"blobs"`
	Bytes        int64 `json:"bytes"`
	BlobsPresent int   `json:"blobsPresent"`
	Referrers    int   `json:"referrers,omitempty"`

	mu       sync.Mutex
	filtered int // index children left out by the platform filter
	dryRun   bool
}

func (it *Item) addBlob(size int64, sent bool) {
	it.mu.Lock()
	defer it.mu.Unlock()
	if sent {
		it.Blobs++
		it.Bytes += size
	} else {
		it.BlobsPresent++
	}
}

// Report is what one run of one or more rules did.
type Report struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	DryRun   bool      `json:"dryRun,omitempty"`
	Items    []*Item   `json:"items"`
	// Errors are failures that are not one image's: an upstream that
	// cannot be listed, credentials that cannot be read.
	Errors []RuleError `json:"errors,omitempty"`
}

// RuleError is a rule's failure that no single image carries.
type RuleError struct {
	Rule   string `json:"rule"`
	Reason string `json:"reason"`
}

// Count is how many items had outcome o.
func (r *Report) Count(o Outcome) int {
	n := 0
	for _, it := range r.Items {
		if it.Outcome == o {
			n++
		}
	}
	return n
}

// BytesCopied is the sum of the bytes sent.
func (r *Report) BytesCopied() int64 {
	var n int64
	for _, it := range r.Items {
		n += it.Bytes
	}
	return n
}

// Failed reports whether anything failed.
func (r *Report) Failed() bool { return len(r.Errors) > 0 || r.Count(OutcomeFailed) > 0 }

// RunOptions select what a run does.
type RunOptions struct {
	Rules  []string // names; empty: every rule
	DryRun bool
}

// Run runs the rules now, one after the other, and reports each image.
// One image failing does not stop the others; an unknown rule name is an
// error before anything is contacted.
func (s *Syncer) Run(ctx context.Context, o RunOptions) (*Report, error) {
	rules := s.cfg.Rules
	if len(o.Rules) > 0 {
		rules = nil
		for _, n := range o.Rules {
			r := s.cfg.Rule(n)
			if r == nil {
				return nil, fmt.Errorf("no rule named %q in the sync configuration", n)
			}
			rules = append(rules, r)
		}
	}
	rep := &Report{Started: time.Now(), DryRun: o.DryRun}
	for _, r := range rules {
		if err := s.runRule(ctx, r, o.DryRun, rep); err != nil {
			rep.Errors = append(rep.Errors, RuleError{Rule: r.Name, Reason: err.Error()})
			s.log.Warn("sync rule failed", "rule", r.Name, "upstream", r.up.Name, "err", err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	rep.Finished = time.Now()
	return rep, nil
}

func (s *Syncer) runRule(ctx context.Context, r *Rule, dryRun bool, rep *Report) error {
	c, err := s.client(ctx, r.up)
	if err != nil {
		return err
	}
	repos, err := s.repositories(ctx, c, r)
	if err != nil {
		return err
	}
	for _, repo := range repos {
		src := c.repo(repo)
		var tags []string
		err := s.retry(ctx, "listing the tags of "+src.String(), func() error {
			var err error
			tags, err = c.puller.List(ctx, src)
			return err
		})
		if err != nil {
			return upstreamError(r.up, err)
		}
		sort.Strings(tags)
		for _, t := range tags {
			if !r.MatchTag(t) {
				continue
			}
			dst := s.dest.Registry.Repo(r.DestinationOf(repo))
			it := &Item{Rule: r.Name, Source: src.Tag(t).String(), Destination: dst.RepositoryStr() + ":" + t, dryRun: dryRun}
			rep.Items = append(rep.Items, it)
			err := s.copyImage(ctx, &job{c: c, src: src, dst: dst, ref: t, platforms: r.Platforms, referrers: r.Referrers, item: it})
			if err != nil {
				it.Outcome, it.Reason = OutcomeFailed, upstreamError(r.up, err).Error()
				s.log.Warn("sync failed", "rule", r.Name, "source", it.Source, "destination", it.Destination, "err", err)
				continue
			}
			s.log.Info("sync", "rule", r.Name, "source", it.Source, "destination", it.Destination, "digest", it.Digest,
				"outcome", it.Outcome, "blobs", it.Blobs, "bytes", it.Bytes, "blobsPresent", it.BlobsPresent, "referrers", it.Referrers)
		}
	}
	return nil
}

// repositories are the upstream repositories a rule names: literal names
// as they are, globs matched against the upstream's catalog.
func (s *Syncer) repositories(ctx context.Context, c *client, r *Rule) ([]string, error) {
	var out []string
	var catalog []string
	for _, g := range r.Repositories {
		if !isGlob(g) {
			out = append(out, g)
			continue
		}
		if catalog == nil {
			err := s.retry(ctx, "listing the repositories of "+c.reg.String(), func() error {
				var err error
				catalog, err = c.puller.Catalog(ctx, c.reg)
				return err
			})
			if err != nil {
				return nil, upstreamError(r.up, err)
			}
		}
		for _, repo := range catalog {
			if r.MatchRepository(repo) {
				out = append(out, repo)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// upstreamError names the upstream in an error that does not yet.
func upstreamError(u *Upstream, err error) error {
	if isCertError(err) {
		return fmt.Errorf("upstream %s: its certificate is not trusted (give its CA with ca: in the sync configuration): %w", u, err)
	}
	return fmt.Errorf("upstream %s: %w", u, err)
}

func isCertError(err error) bool {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var tv *tls.CertificateVerificationError
	return errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) || errors.As(err, &tv)
}
