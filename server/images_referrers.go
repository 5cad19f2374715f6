package server

import (
	"cmp"
	"context"
	"fmt"
	"slices"
)

// ReferrerCount is how many referrers (signatures, SBOMs, attestations:
// manifests whose subject is the tag's manifest) of one artifact type a
// tag has.
type ReferrerCount struct {
	ArtifactType string `json:"artifactType"` // "" when the referrer names none
	Count        int    `json:"count"`
}

// ReferrerTotal is how many referrers the tag has, of every type.
func (t ImageTag) ReferrerTotal() int {
	n := 0
	for _, c := range t.Referrers {
		n += c.Count
	}
	return n
}

// addReferrerCounts fills in each tag's Referrers from the referrers
// index (referrersindex.go): one directory listing per distinct digest,
// the same read the referrers API makes, not a scan of the repository.
func addReferrerCounts(ctx context.Context, idx *referrersIndex, r *ImageRepo) error {
	seen := map[string][]ReferrerCount{}
	for i := range r.Tags {
		t := &r.Tags[i]
		if t.Digest == "" {
			continue
		}
		counts, ok := seen[t.Digest]
		if !ok {
			d, err := parseDigest(t.Digest)
			if err != nil {
				continue
			}
			descs, err := idx.list(ctx, r.Name, d)
			if err != nil {
				return fmt.Errorf("counting the referrers of %s:%s: %w", r.Name, t.Tag, err)
			}
			counts = countByArtifactType(descs)
			seen[t.Digest] = counts
		}
		t.Referrers = counts
	}
	return nil
}

// countByArtifactType counts descriptors by artifact type, sorted by type;
// nil for none.
func countByArtifactType(descs []ociDescriptor) []ReferrerCount {
	var out []ReferrerCount
	for _, d := range descs {
		i := slices.IndexFunc(out, func(c ReferrerCount) bool { return c.ArtifactType == d.ArtifactType })
		if i < 0 {
			out = append(out, ReferrerCount{ArtifactType: d.ArtifactType})
			i = len(out) - 1
		}
		out[i].Count++
	}
	slices.SortFunc(out, func(a, b ReferrerCount) int { return cmp.Compare(a.ArtifactType, b.ArtifactType) })
	return out
}
