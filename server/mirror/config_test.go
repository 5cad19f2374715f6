package mirror

import (
	"strings"
	"testing"
)

const goodConfig = `upstreams:
  - name: hub
    url: https://registry.example.test:5000
    credentials: {usernameEnv: HUB_USER, passwordEnv: HUB_PASSWORD}
rules:
  - name: web
    upstream: hub
    repositories: [library/nginx, "team/*"]
    tags:
      semver: ">=1.4 <2"
    platforms: [linux/arm64, linux/arm/v7]
    destination: hub
    referrers: true
    schedule: every@1h
  - name: nightly
    upstream: hub
    repositories: [tools/x]
    tags: {regex: "^nightly-"}
    schedule: daily@02:00
pullThrough:
  - prefix: cache/hub
    upstream: hub
`

func TestParseGood(t *testing.T) {
	c, err := Parse([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	web := c.Rule("web")
	for tag, want := range map[string]bool{"1.4.0": true, "1.4": true, "v1.9.9": true, "1.3.9": false, "2.0.0": false, "latest": false, "1.5.0-rc1": false} {
		if got := web.MatchTag(tag); got != want {
			t.Errorf("semver >=1.4 <2 matches %q: %v, want %v", tag, got, want)
		}
	}
	for repo, want := range map[string]bool{"library/nginx": true, "team/a": true, "team/a/b": false, "library/redis": false} {
		if got := web.MatchRepository(repo); got != want {
			t.Errorf("repositories match %q: %v, want %v", repo, got, want)
		}
	}
	if got := web.DestinationOf("team/a"); got != "hub/team/a" {
		t.Errorf("destination: %s", got)
	}
	n := c.Rule("nightly")
	if !n.MatchTag("nightly-2026") || n.MatchTag("1.0") {
		t.Error("regex filter")
	}
	if up, ok := c.PullThrough[0].UpstreamRepo("cache/hub/library/nginx"); !ok || up != "library/nginx" {
		t.Errorf("pull-through repo: %q %v", up, ok)
	}
	if _, ok := c.PullThrough[0].UpstreamRepo("cache/hubby/x"); ok {
		t.Error("cache/hubby is not under cache/hub")
	}
}

func TestParseErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct {
		name, edit, from, want string
	}{
		{"unknown key", "    referrer: true", "    referrers: true", "line 13: unknown key \"referrer\""},
		{"unknown top key", "rule:", "rules:", "line 5: unknown key \"rule\""},
		{"bad regex", `tags: {regex: "^(nightly"}`, `tags: {regex: "^nightly-"}`, "line 18: rule \"nightly\": bad tags.regex"},
		{"bad semver", `      semver: ">=banana"`, `      semver: ">=1.4 <2"`, "line 10: rule \"web\": bad tags.semver range"},
		{"unknown schedule", "schedule: hourly", "schedule: every@1h", "line 14: rule \"web\": unknown schedule \"hourly\""},
		{"short interval", "schedule: every@10s", "schedule: every@1h", "shorter than 1m"},
		{"bad url", "url: ftp://x", "url: https://registry.example.test:5000", "line 3: upstream \"hub\": bad url"},
		{"url with credentials", "url: https://u:p@x", "url: https://registry.example.test:5000", "credentials under credentials:"},
		{"undefined upstream", "upstream: nope\n    repositories: [tools/x]", "upstream: hub\n    repositories: [tools/x]", "line 16: rule \"nightly\" names upstream \"nope\""},
		{"bad platform", "platforms: [linux]", "platforms: [linux/arm64, linux/arm/v7]", "line 11: bad platform \"linux\""},
		{"duplicate rule", "name: web\n    upstream: hub\n    repositories: [tools/x]", "name: nightly\n    upstream: hub\n    repositories: [tools/x]", "rule \"web\" is already defined at line 6"},
		{"half env credentials", "{usernameEnv: HUB_USER}", "{usernameEnv: HUB_USER, passwordEnv: HUB_PASSWORD}", "line 4: upstream \"hub\": credentials need"},
		{"wrong type", "referrers: maybe", "referrers: true", "line 13"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := strings.Replace(goodConfig, tc.from, tc.edit, 1)
			if y == goodConfig {
				t.Fatalf("edit %q not applied", tc.from)
			}
			_, err := Parse([]byte(y))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]int64{"2MiB/s": 2 << 20, "500KB/s": 500000, "off": -1, "1.5MB/s": 1500000} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"2MiB", "fast", "0MiB/s", "-1MB/s", "10B/s"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) accepted", in)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("rules:\n  - null\n"))
	f.Add([]byte("upstreams: [{name: a, url: 'https://x'}]\npullThrough: [{prefix: a, upstream: a}, {prefix: a/b, upstream: a}]"))
	f.Add([]byte("mirror: {listen: ':1', registries: [{name: docker.io, repositories: ['library/*']}, null]}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			return
		}
		if m := c.Mirror; m != nil {
			if m.Listen == "" || len(m.Registries) == 0 {
				t.Fatal("a mirror without a listen address or registries passed validation")
			}
			m.Serves("", "library/alpine")
			m.Serves("quay.io", "a/b")
		}
		for _, r := range c.Rules {
			r.MatchTag("1.2.3")
			r.MatchRepository("a/b")
			if r.up == nil {
				t.Fatal("a rule without its upstream passed validation")
			}
		}
	})
}

func TestParseMirror(t *testing.T) {
	c, err := Parse([]byte("mirror:\n  listen: \":31002\"\n  registries:\n    - name: docker.io\n      repositories: [\"library/*\"]\n    - name: quay.io\n      repositories: [\"prometheus/*\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ns, repo string
		want     bool
	}{
		{"", "library/alpine", true},
		{"docker.io", "library/alpine", true},
		{"docker.io", "library/a/b", false},
		{"docker.io", "team/app", false},
		{"quay.io", "prometheus/node-exporter", true},
		{"quay.io", "library/alpine", false},
		{"ghcr.io", "library/alpine", false},
	} {
		if got := c.Mirror.Serves(tc.ns, tc.repo); got != tc.want {
			t.Errorf("Serves(%q, %q) = %v, want %v", tc.ns, tc.repo, got, tc.want)
		}
	}
	var none *Mirror
	if none.Serves("", "library/alpine") {
		t.Error("no mirror section serves something")
	}
	for _, tc := range []struct{ in, want string }{
		{"mirror:\n  registries:\n    - name: docker.io\n      repositories: [x]\n", "line 2: mirror has no listen address"},
		{"mirror:\n  listen: nope\n  registries:\n    - name: docker.io\n      repositories: [x]\n", "line 2: mirror: bad listen address"},
		{"mirror:\n  listen: \":1\"\n", "mirror names no registries"},
		{"mirror:\n  listen: \":1\"\n  registries:\n    - name: docker.io\n", "line 4: mirror registry \"docker.io\" lists no repositories"},
		{"mirror:\n  listen: \":1\"\n  registries:\n    - name: docker.io/library\n      repositories: [x]\n", "is not a registry host"},
		{"mirror:\n  listen: \":1\"\n  registries:\n    - name: docker.io\n      repositories: [\"[\"]\n", "line 5: mirror registry \"docker.io\": bad repository glob"},
		{"mirror:\n  listen: \":1\"\n  registries:\n    - name: a.io\n      repositories: [x]\n    - name: a.io\n      repositories: [x]\n", "line 6: mirror registry \"a.io\" is already listed at line 4"},
		{"mirror:\n  listen: \":1\"\n  anonymous: true\n", "line 3: unknown key \"anonymous\""},
	} {
		if _, err := Parse([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q): %v, want %q", tc.in, err, tc.want)
		}
	}
}
