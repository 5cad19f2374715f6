// Package mirror brings images from upstream registries onto the device:
// sync rules run on a schedule or on demand (`edgecrd sync run`), and a
// pull-through prefix fetches what a client asks for and the device does
// not have. It reads upstreams with go-containerregistry and writes
// through a destination given as a remote.Option set (the server hands it
// its own registry, in process, so that quota, the referrers index and the
// collector's freshness apply to synced content as to a push).
package mirror

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/Masterminds/semver/v3"
	"gopkg.in/yaml.v3"
)

// Config is a sync configuration file:
//
//	upstreams:
//	  - name: hub
//	    url: https://registry.example.com
//	    credentials: {file: /etc/edgecrd/hub.cred}   # one line USER:PASSWORD
//	    # or credentials: {usernameEnv: HUB_USER, passwordEnv: HUB_PASSWORD}
//	    ca: /etc/edgecrd/hub-ca.pem                   # optional: trust only this CA
//	    rate: 2MiB/s                                  # optional, else --sync-rate
//	rules:
//	  - name: web
//	    upstream: hub
//	    repositories: [library/nginx, "team/*"]
//	    tags: {semver: ">=1.4 <2", regex: "^1\\."}     # both: a tag must satisfy both
//	    platforms: [linux/amd64, linux/arm64]
//	    destination: hub                              # device repo = hub/<upstream repo>
//	    referrers: true
//	    schedule: every@1h                            # or daily@02:00, off
//	pullThrough:
//	  - prefix: cache/hub                             # pulls of cache/hub/<repo> fetch hub's <repo>
//	    upstream: hub
//	mirror:                                           # the device as its clients' mirror (edgecr join --mirror)
//	  listen: ":31002"                                # a listener of its own: anonymous, read-only
//	  registries:
//	    - name: docker.io                             # clients ask for docker.io's library/alpine as library/alpine
//	      repositories: ["library/*"]                 # what anyone who reaches the port may pull
type Config struct {
	Upstreams   []*Upstream    `yaml:"upstreams"`
	Rules       []*Rule        `yaml:"rules"`
	PullThrough []*PullThrough `yaml:"pullThrough"`
	Mirror      *Mirror        `yaml:"mirror"`
}

// Mirror makes the device serve as its clients' mirror of other
// registries, on a listener of its own. Clients' runtimes send a mirror
// no credentials of the device (Docker sends the mirrored registry's, if
// any; containerd's hosts.toml carries none), so that listener serves
// anonymous pulls, and only pulls, of the repositories listed: the
// device's own repository of the same name, as stored.
type Mirror struct {
	Listen     string              `yaml:"listen"`
	Registries []*MirroredRegistry `yaml:"registries"`

	line int
}

// MirroredRegistry is one registry the device mirrors.
type MirroredRegistry struct {
	Name         string   `yaml:"name"`
	Repositories []string `yaml:"repositories"`

	line int
}

// Upstream is a registry images come from.
type Upstream struct {
	Name        string       `yaml:"name"`
	URL         string       `yaml:"url"`
	Credentials *Credentials `yaml:"credentials"`
	CA          string       `yaml:"ca"`
	Rate        string       `yaml:"rate"`

	line     int
	node     *yaml.Node
	registry string // host[:port] of URL
	insecure bool   // URL is http://
	rate     int64  // bytes per second; 0: the default (--sync-rate), -1 none
}

// Credentials name where an upstream's user name and password are; the
// configuration never holds them.
type Credentials struct {
	File        string `yaml:"file"`
	UsernameEnv string `yaml:"usernameEnv"`
	PasswordEnv string `yaml:"passwordEnv"`
}

// Rule selects what to copy from one upstream, and when.
type Rule struct {
	Name         string   `yaml:"name"`
	Upstream     string   `yaml:"upstream"`
	Repositories []string `yaml:"repositories"`
	Tags         *Tags    `yaml:"tags"`
	Platforms    []string `yaml:"platforms"`
	Destination  string   `yaml:"destination"`
	Referrers    bool     `yaml:"referrers"`
	Schedule     string   `yaml:"schedule"`

	line     int
	node     *yaml.Node
	up       *Upstream
	regex    *regexp.Regexp
	semver   *semver.Constraints
	schedule Schedule
}

// Tags filter a rule's tags; both empty: every tag.
type Tags struct {
	Regex  string `yaml:"regex"`
	Semver string `yaml:"semver"`
}

// PullThrough makes pulls of device repositories under Prefix fetch the
// rest of the name from Upstream when the device does not have it.
type PullThrough struct {
	Prefix    string   `yaml:"prefix"`
	Upstream  string   `yaml:"upstream"`
	Platforms []string `yaml:"platforms"`
	Referrers bool     `yaml:"referrers"`

	line int
	up   *Upstream
}

// UpstreamOf is the upstream a rule or prefix reads from.
func (r *Rule) UpstreamOf() *Upstream        { return r.up }
func (p *PullThrough) UpstreamOf() *Upstream { return p.up }
func (r *Rule) ScheduleOf() Schedule         { return r.schedule }
func (u *Upstream) Registry() string         { return u.registry }
func (u *Upstream) String() string           { return u.Name + " (" + u.registry + ")" }
func (c *Config) Rule(name string) *Rule {
	return find(c.Rules, func(r *Rule) bool { return r.Name == name })
}
func (c *Config) upstream(name string) *Upstream {
	return find(c.Upstreams, func(u *Upstream) bool { return u.Name == name })
}

func find[T any](s []*T, f func(*T) bool) *T {
	if i := slices.IndexFunc(s, f); i >= 0 {
		return s[i]
	}
	return nil
}

// Load reads and validates the configuration file at p.
func Load(p string) (*Config, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("reading sync configuration: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("sync configuration %s: %w", p, err)
	}
	return c, nil
}

// lineError is a configuration error at a line of the file.
func lineError(line int, format string, args ...any) error {
	return fmt.Errorf("line %d: %s", line, fmt.Sprintf(format, args...))
}

// Parse reads and validates a configuration: an unknown key, a bad
// regular expression, semver range, schedule or URL, a missing or
// duplicate name, an undefined upstream: each is an error naming its line.
// Credential files and environment variables are read when an upstream is
// first used, not here (they may be provisioned after the configuration).
func Parse(b []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, err
	}
	c := &Config{}
	if len(root.Content) == 0 {
		return c, nil
	}
	doc := root.Content[0]
	if err := checkKeys(doc, reflect.TypeOf(Config{}), "the file"); err != nil {
		return nil, err
	}
	if err := doc.Decode(c); err != nil {
		return nil, err
	}
	items := func(key string) []*yaml.Node {
		if n := valueOf(doc, key); n != nil {
			return n.Content
		}
		return nil
	}
	ul, rl, pl := items("upstreams"), items("rules"), items("pullThrough")
	seen := map[string]int{}
	for i, u := range c.Upstreams {
		if u == nil {
			return nil, lineError(ul[i].Line, "empty upstream")
		}
		u.line, u.node = ul[i].Line, ul[i]
		if err := u.validate(); err != nil {
			return nil, err
		}
		if prev, ok := seen[u.Name]; ok {
			return nil, lineError(u.line, "upstream %q is already defined at line %d", u.Name, prev)
		}
		seen[u.Name] = u.line
	}
	seen = map[string]int{}
	for i, r := range c.Rules {
		if r == nil {
			return nil, lineError(rl[i].Line, "empty rule")
		}
		r.line, r.node = rl[i].Line, rl[i]
		if err := r.validate(c); err != nil {
			return nil, err
		}
		if prev, ok := seen[r.Name]; ok {
			return nil, lineError(r.line, "rule %q is already defined at line %d", r.Name, prev)
		}
		seen[r.Name] = r.line
	}
	prefixes := map[string]int{}
	for i, p := range c.PullThrough {
		if p == nil {
			return nil, lineError(pl[i].Line, "empty pullThrough entry")
		}
		p.line = pl[i].Line
		p.Prefix = strings.Trim(p.Prefix, "/")
		if p.Prefix == "" || !repoRE.MatchString(p.Prefix) {
			return nil, lineError(p.line, "pullThrough prefix %q is not a repository name prefix (lower-case components joined by /)", p.Prefix)
		}
		for q, ln := range prefixes {
			if q == p.Prefix || strings.HasPrefix(p.Prefix+"/", q+"/") || strings.HasPrefix(q+"/", p.Prefix+"/") {
				return nil, lineError(p.line, "pullThrough prefix %q overlaps %q at line %d", p.Prefix, q, ln)
			}
		}
		prefixes[p.Prefix] = p.line
		if p.up = c.upstream(p.Upstream); p.up == nil {
			return nil, lineError(p.line, "pullThrough %q names upstream %q, which is not defined", p.Prefix, p.Upstream)
		}
		if err := checkPlatforms(p.Platforms, p.line); err != nil {
			return nil, err
		}
	}
	if m := c.Mirror; m != nil {
		m.line = at(doc, "mirror")
		if err := m.validate(valueOf(doc, "mirror")); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (m *Mirror) validate(n *yaml.Node) error {
	if m.Listen == "" {
		return lineError(m.line, "mirror has no listen address (e.g. \":31002\")")
	}
	if _, _, err := net.SplitHostPort(m.Listen); err != nil {
		return lineError(at(n, "listen"), "mirror: bad listen address %q: %v", m.Listen, err)
	}
	if len(m.Registries) == 0 {
		return lineError(m.line, "mirror names no registries")
	}
	var rl []*yaml.Node
	if v := valueOf(n, "registries"); v != nil {
		rl = v.Content
	}
	seen := map[string]int{}
	for i, r := range m.Registries {
		if r == nil {
			return lineError(rl[i].Line, "empty mirror registry")
		}
		r.line = rl[i].Line
		if r.Name == "" || strings.ContainsAny(r.Name, "/ \t") {
			return lineError(r.line, "mirror registry %q is not a registry host (e.g. docker.io)", r.Name)
		}
		if prev, ok := seen[r.Name]; ok {
			return lineError(r.line, "mirror registry %q is already listed at line %d", r.Name, prev)
		}
		seen[r.Name] = r.line
		if len(r.Repositories) == 0 {
			return lineError(r.line, "mirror registry %q lists no repositories (give the globs anyone may pull, e.g. library/*)", r.Name)
		}
		for _, g := range r.Repositories {
			if _, err := path.Match(g, ""); err != nil || g == "" || strings.HasPrefix(g, "/") {
				return lineError(at(rl[i], "repositories"), "mirror registry %q: bad repository glob %q", r.Name, g)
			}
		}
	}
	return nil
}

// Serves reports whether the mirror serves repo to a client that asks for
// it as registry's (ns: containerd's ns query parameter; "" for a client
// that does not say, Docker, which mirrors docker.io only).
func (m *Mirror) Serves(ns, repo string) bool {
	if m == nil {
		return false
	}
	if ns == "" {
		ns = "docker.io"
	}
	for _, r := range m.Registries {
		if r.Name != ns {
			continue
		}
		for _, g := range r.Repositories {
			if ok, _ := path.Match(g, repo); ok {
				return true
			}
		}
	}
	return false
}

// repoRE is the OCI repository name grammar.
var repoRE = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)

func (u *Upstream) validate() error {
	if u.Name == "" {
		return lineError(u.line, "upstream without a name")
	}
	p, err := url.Parse(u.URL)
	switch {
	case u.URL == "":
		return lineError(u.line, "upstream %q has no url", u.Name)
	case err != nil:
		return lineError(at(u.node, "url"), "upstream %q: bad url %q: %v", u.Name, u.URL, err)
	case p.Scheme != "https" && p.Scheme != "http":
		return lineError(at(u.node, "url"), "upstream %q: bad url %q: want https://host[:port]", u.Name, u.URL)
	case p.Host == "" || p.User != nil || (p.Path != "" && p.Path != "/") || p.RawQuery != "" || p.Fragment != "":
		return lineError(at(u.node, "url"), "upstream %q: bad url %q: want https://host[:port] with nothing after it (and credentials under credentials:)", u.Name, u.URL)
	}
	u.registry, u.insecure = p.Host, p.Scheme == "http"
	if c := u.Credentials; c != nil {
		switch {
		case c.File != "" && (c.UsernameEnv != "" || c.PasswordEnv != ""):
			return lineError(at(u.node, "credentials"), "upstream %q: credentials name a file and environment variables: give one", u.Name)
		case c.File == "" && (c.UsernameEnv == "" || c.PasswordEnv == ""):
			return lineError(at(u.node, "credentials"), "upstream %q: credentials need a file, or both usernameEnv and passwordEnv", u.Name)
		}
	}
	if u.Rate != "" {
		n, err := ParseRate(u.Rate)
		if err != nil {
			return lineError(at(u.node, "rate"), "upstream %q: %v", u.Name, err)
		}
		u.rate = n
	}
	return nil
}

func (r *Rule) validate(c *Config) error {
	if r.Name == "" {
		return lineError(r.line, "rule without a name")
	}
	if r.up = c.upstream(r.Upstream); r.up == nil {
		return lineError(at(r.node, "upstream"), "rule %q names upstream %q, which is not defined", r.Name, r.Upstream)
	}
	if len(r.Repositories) == 0 {
		return lineError(r.line, "rule %q has no repositories", r.Name)
	}
	for _, g := range r.Repositories {
		if _, err := path.Match(g, ""); err != nil || g == "" || strings.HasPrefix(g, "/") {
			return lineError(at(r.node, "repositories"), "rule %q: bad repository glob %q", r.Name, g)
		}
	}
	if t := r.Tags; t != nil {
		if t.Regex != "" {
			re, err := regexp.Compile(t.Regex)
			if err != nil {
				return lineError(at(r.node, "tags", "regex"), "rule %q: bad tags.regex %q: %v", r.Name, t.Regex, err)
			}
			r.regex = re
		}
		if t.Semver != "" {
			cs, err := semver.NewConstraint(t.Semver)
			if err != nil {
				return lineError(at(r.node, "tags", "semver"), "rule %q: bad tags.semver range %q: %v", r.Name, t.Semver, err)
			}
			r.semver = cs
		}
	}
	if err := checkPlatforms(r.Platforms, at(r.node, "platforms")); err != nil {
		return err
	}
	r.Destination = strings.Trim(r.Destination, "/")
	if r.Destination != "" && !repoRE.MatchString(r.Destination) {
		return lineError(at(r.node, "destination"), "rule %q: destination %q is not a repository name prefix", r.Name, r.Destination)
	}
	s, err := ParseSchedule(r.Schedule)
	if err != nil {
		return lineError(at(r.node, "schedule"), "rule %q: %v", r.Name, err)
	}
	r.schedule = s
	return nil
}

func checkPlatforms(ps []string, line int) error {
	for _, p := range ps {
		if _, err := parsePlatform(p); err != nil {
			return lineError(line, "%v", err)
		}
	}
	return nil
}

// checkKeys refuses a mapping key that t (a struct, through its yaml
// tags) does not know, recursively, naming the key's line.
func checkKeys(n *yaml.Node, t reflect.Type, where string) error {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
		if n.Kind == yaml.SequenceNode {
			for _, it := range n.Content {
				if err := checkKeys(it, t, where); err != nil {
					return err
				}
			}
			return nil
		}
	}
	if t.Kind() != reflect.Struct || n.Kind != yaml.MappingNode {
		return nil
	}
	fields := map[string]reflect.Type{}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		fields[tag] = f.Type
		names = append(names, tag)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		ft, ok := fields[k.Value]
		if !ok {
			return lineError(k.Line, "unknown key %q in %s (known: %s)", k.Value, where, strings.Join(names, ", "))
		}
		if err := checkKeys(v, ft, k.Value); err != nil {
			return err
		}
	}
	return nil
}

func valueOf(m *yaml.Node, key string) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// at is the line of the value at keys under n (as deep as they go), or of n.
func at(n *yaml.Node, keys ...string) int {
	line := n.Line
	for _, k := range keys {
		if n = valueOf(n, k); n == nil {
			break
		}
		line = n.Line
	}
	return line
}
