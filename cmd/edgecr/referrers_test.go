package main

import (
	"testing"

	"github.com/edgecr/edgecr/agent"
)

func TestReferrerSummary(t *testing.T) {
	for _, c := range []struct {
		refs []agent.ReferrerInfo
		want string
	}{
		{[]agent.ReferrerInfo{{ArtifactType: "application/spdx+json"}}, "1 application/spdx+json"},
		{[]agent.ReferrerInfo{{ArtifactType: "b/sig"}, {ArtifactType: "a/sbom"}, {ArtifactType: "b/sig"}, {}}, "2 b/sig, 1 a/sbom, 1 (no type)"},
	} {
		if got := referrerSummary(c.refs); got != c.want {
			t.Errorf("referrerSummary(%v) = %q, want %q", c.refs, got, c.want)
		}
	}
}
