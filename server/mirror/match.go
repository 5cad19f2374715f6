package mirror

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/Masterminds/semver/v3"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// isGlob reports whether a repository pattern needs the upstream's catalog.
func isGlob(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// MatchRepository reports whether the upstream repository repo is one of
// the rule's: a glob's * does not cross a /, as in path.Match.
func (r *Rule) MatchRepository(repo string) bool {
	for _, g := range r.Repositories {
		if ok, _ := path.Match(g, repo); ok {
			return true
		}
	}
	return false
}

// MatchTag reports whether tag passes the rule's tag filters: the regular
// expression (unanchored, as Go's regexp matches; anchor it with ^…$) and
// the semver range, both when both are given. A tag that is not a
// version (latest, main) never passes a semver range; pre-releases
// (1.5.0-rc1) pass only a range that names a pre-release, as
// Masterminds/semver decides.
func (r *Rule) MatchTag(tag string) bool {
	if r.regex != nil && !r.regex.MatchString(tag) {
		return false
	}
	if r.semver != nil {
		v, err := semver.NewVersion(tag)
		if err != nil || !r.semver.Check(v) {
			return false
		}
	}
	return true
}

// DestinationOf is the device repository an upstream repository is copied to.
func (r *Rule) DestinationOf(repo string) string {
	if r.Destination == "" {
		return repo
	}
	return r.Destination + "/" + repo
}

// UpstreamRepo is the upstream repository a device repository under this
// prefix fetches, and whether repo is under it at all.
func (p *PullThrough) UpstreamRepo(repo string) (string, bool) {
	rest, ok := strings.CutPrefix(repo, p.Prefix+"/")
	if !ok || rest == "" {
		return "", false
	}
	return rest, true
}

// parsePlatform reads os/arch[/variant].
func parsePlatform(s string) (v1.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" || (len(parts) == 3 && parts[2] == "") {
		return v1.Platform{}, fmt.Errorf("bad platform %q (want os/arch[/variant], e.g. linux/arm64)", s)
	}
	p := v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// wantPlatform reports whether an index child for p is to be copied: no
// filter takes all; a child without a platform (an attestation manifest
// of buildx, say) is taken when its platform is unknown ("unknown/unknown")
// only if the filter names it. A filter without a variant takes every
// variant of that os/arch.
func wantPlatform(filter []string, p *v1.Platform) bool {
	if len(filter) == 0 {
		return true
	}
	if p == nil {
		return false
	}
	for _, f := range filter {
		fp, err := parsePlatform(f)
		if err != nil {
			continue
		}
		if fp.OS == p.OS && fp.Architecture == p.Architecture && (fp.Variant == "" || fp.Variant == p.Variant) {
			return true
		}
	}
	return false
}

// ParseRate reads a bandwidth such as 2MiB/s, 500KB/s or off.
func ParseRate(s string) (int64, error) {
	t := strings.TrimSpace(s)
	switch strings.ToLower(t) {
	case "", "off", "none", "unlimited":
		return -1, nil
	}
	num, ok := strings.CutSuffix(t, "/s")
	if !ok {
		return 0, fmt.Errorf("bad rate %q (want a size per second, e.g. 2MiB/s, or off)", s)
	}
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	for _, u := range units {
		if v, ok := strings.CutSuffix(num, u.suffix); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || f <= 0 || f*u.mult < 1024 || f*u.mult > 1<<40 {
				return 0, fmt.Errorf("bad rate %q (want at least 1KiB/s, e.g. 2MiB/s, or off)", s)
			}
			return int64(f * u.mult), nil
		}
	}
	return 0, fmt.Errorf("bad rate %q (want a unit: B, KB, MB, GB, KiB, MiB or GiB per second, e.g. 2MiB/s)", s)
}
