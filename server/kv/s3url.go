package kv

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/distribution/distribution/v3/configuration"
)

// S3Location is a parsed storage URL:
//
//	s3://BUCKET[/PREFIX]?endpoint=URL&region=R
//
// endpoint is the S3 API's base URL (http:// or https://; omitted for AWS,
// which then needs region); region defaults to us-east-1 with an endpoint
// (MinIO's default). Credentials are never part of it: they come from the
// standard AWS environment variables or shared credentials file.
type S3Location struct {
	Bucket   string
	Prefix   string // "" or segments without leading or trailing "/"
	Endpoint string // "" for AWS
	Region   string
}

// storageParams are the query parameters a storage URL takes.
var storageParams = []string{"endpoint", "region"}

// secretParams are names someone might try to pass credentials with.
var secretParams = []string{"accesskey", "secretkey", "sessiontoken", "access_key", "secret_key", "aws_access_key_id", "aws_secret_access_key", "password", "token"}

const credentialsHint = "credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or the shared credentials file, not the URL"

// ParseS3URL parses a storage URL. Its errors name the problem and never
// repeat a value that could be a secret (user info, unknown parameters).
func ParseS3URL(raw string) (*S3Location, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, fmt.Errorf("parsing storage URL: no scheme, want s3://BUCKET[/PREFIX]?endpoint=URL&region=R")
	}
	if !strings.EqualFold(scheme, "s3") {
		hint := ""
		if near(strings.ToLower(scheme), "s3") || strings.HasPrefix(strings.ToLower(scheme), "s3") {
			hint = " (did you mean s3?)"
		}
		return nil, fmt.Errorf("parsing storage URL: unsupported scheme %q%s, want s3://", safe(scheme), hint)
	}
	hostPath, query, _ := strings.Cut(rest, "?")
	if strings.Contains(hostPath, "#") || strings.Contains(query, "#") {
		return nil, errors.New("parsing storage URL: a fragment (#) is not allowed")
	}
	if strings.Contains(hostPath, "@") {
		return nil, errors.New("parsing storage URL: user info (@) is not allowed: " + credentialsHint)
	}
	bucket, prefix, _ := strings.Cut(hostPath, "/")
	if bucket == "" {
		return nil, errors.New("parsing storage URL: no bucket, want s3://BUCKET[/PREFIX]")
	}
	if err := validBucket(bucket); err != nil {
		return nil, fmt.Errorf("parsing storage URL: %w", err)
	}
	loc := &S3Location{Bucket: bucket}
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		p, err := url.PathUnescape(prefix)
		if err != nil {
			return nil, fmt.Errorf("parsing storage URL: prefix: bad %% escape")
		}
		if err := ValidKey(p); err != nil {
			return nil, fmt.Errorf("parsing storage URL: prefix %q: segments must be non-empty, not . or .., without control characters, space or !", safe(p))
		}
		loc.Prefix = p
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, errors.New("parsing storage URL: the query is not name=value&...")
	}
	names := make([]string, 0, len(q))
	for n := range q {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ln := strings.ToLower(n)
		switch {
		case contains(storageParams, n):
			if len(q[n]) != 1 {
				return nil, fmt.Errorf("parsing storage URL: parameter %s given %d times", n, len(q[n]))
			}
		case contains(secretParams, ln):
			return nil, fmt.Errorf("parsing storage URL: parameter %q is not accepted: %s", safe(n), credentialsHint)
		default:
			msg := fmt.Sprintf("parsing storage URL: unknown parameter %q", safe(n))
			if s := suggest(ln, storageParams, 2); s != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", s)
			}
			return nil, errors.New(msg + "; known: " + strings.Join(storageParams, ", "))
		}
	}
	if e := q.Get("endpoint"); e != "" || q.Has("endpoint") {
		ep, err := parseEndpoint(e)
		if err != nil {
			return nil, fmt.Errorf("parsing storage URL: %w", err)
		}
		loc.Endpoint = ep
	}
	loc.Region = q.Get("region")
	if q.Has("region") && !validRegion(loc.Region) {
		return nil, fmt.Errorf("parsing storage URL: region %q: want letters, digits and - (e.g. us-east-1)", safe(loc.Region))
	}
	if loc.Region == "" {
		if loc.Endpoint == "" {
			return nil, errors.New("parsing storage URL: no region (needed without an endpoint, for AWS): add ?region=R")
		}
		loc.Region = "us-east-1"
	}
	return loc, nil
}

func parseEndpoint(e string) (string, error) {
	if e == "" {
		return "", errors.New("endpoint is empty, want http(s)://HOST[:PORT]")
	}
	u, err := url.Parse(e)
	if err != nil {
		return "", errors.New("endpoint is not a URL, want http(s)://HOST[:PORT]")
	}
	// The endpoint is repeated in errors only as scheme://host: whatever
	// else it holds is not (it could be a secret pasted at the wrong place).
	if u.User != nil || strings.Contains(e, "@") {
		return "", errors.New("endpoint has user info (@): " + credentialsHint)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		hint := ""
		if s := suggest(strings.ToLower(u.Scheme), []string{"http", "https"}, 1); s != "" {
			hint = fmt.Sprintf(" (did you mean %s?)", s)
		}
		if u.Scheme == "" || u.Opaque != "" {
			return "", errors.New("endpoint has no http:// or https:// scheme")
		}
		return "", fmt.Errorf("endpoint scheme %q%s: want http or https", safe(u.Scheme), hint)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", errors.New("endpoint has no host, want http(s)://HOST[:PORT]")
	}
	if p := u.Port(); p != "" {
		if _, err := net.LookupPort("tcp", p); err != nil || p == "0" {
			return "", fmt.Errorf("endpoint %s://%s: bad port %q", u.Scheme, u.Host, safe(p))
		}
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "", fmt.Errorf("endpoint %s://%s: want only scheme://host[:port], no path or query", u.Scheme, u.Host)
	}
	return u.Scheme + "://" + u.Host, nil
}

// validBucket applies S3's bucket naming rules.
func validBucket(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket name %q: %d characters, want 3 to 63", safe(b), len(b))
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return fmt.Errorf("bucket name %q: character %q, want lowercase letters, digits, - and .", safe(b), c)
		}
	}
	if !alnum(b[0]) || !alnum(b[len(b)-1]) {
		return fmt.Errorf("bucket name %q: must start and end with a letter or digit", b)
	}
	if strings.Contains(b, "..") || strings.Contains(b, ".-") || strings.Contains(b, "-.") {
		return fmt.Errorf("bucket name %q: no .. .- or -. allowed", b)
	}
	if net.ParseIP(b) != nil {
		return fmt.Errorf("bucket name %q: must not be an IP address", b)
	}
	if strings.HasPrefix(b, "xn--") || strings.HasSuffix(b, "-s3alias") || strings.HasSuffix(b, "--ol-s3") {
		return fmt.Errorf("bucket name %q: reserved prefix or suffix", b)
	}
	return nil
}

func alnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func validRegion(r string) bool {
	if r == "" || len(r) > 32 {
		return false
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if !(alnum(c) || c == '-') {
			return false
		}
	}
	return true
}

// safe is s for an error message when it looks like a name: short, of
// letters, digits and "-_. /"; anything else could be a pasted secret and
// is not repeated.
func safe(s string) string {
	if len(s) > 24 {
		return "(" + strconv.Itoa(len(s)) + " characters, not shown)"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_. /", c) >= 0) {
			return "(not shown: it has the character " + strconv.QuoteRune(rune(c)) + ")"
		}
	}
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest is the entry of known nearest to s (edit distance at most maxD), or "".
func suggest(s string, known []string, maxD int) string {
	best, bestD := "", maxD+1
	for _, k := range known {
		if d := distance(s, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func near(a, b string) bool { return distance(a, b) <= 1 }

// distance is the Levenshtein distance of a and b (short strings only).
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// String is the URL again, in canonical form (no secrets: it has none).
func (l *S3Location) String() string {
	u := "s3://" + l.Bucket
	if l.Prefix != "" {
		u += "/" + (&url.URL{Path: l.Prefix}).EscapedPath()
	}
	q := url.Values{}
	if l.Endpoint != "" {
		q.Set("endpoint", l.Endpoint)
	}
	q.Set("region", l.Region)
	return u + "?" + q.Encode()
}

// StateKeyPrefix is where edgecrd's state lives in the bucket: beside
// distribution's docker/registry/v2 under the same prefix.
func (l *S3Location) StateKeyPrefix() string {
	return path.Join(l.Prefix, "edgecr", "state") + "/"
}

// KVConfig is the state store's configuration.
func (l *S3Location) KVConfig() S3Config {
	return S3Config{Bucket: l.Bucket, KeyPrefix: l.StateKeyPrefix(), Endpoint: l.Endpoint, Region: l.Region}
}

// DriverParameters are the parameters of distribution's s3-aws storage
// driver ("s3") for this location: path-style requests (MinIO and most
// S3-compatible stores need them with regionendpoint; distribution#4528),
// TLS as the endpoint's scheme says, images under PREFIX. No credentials:
// the driver then uses the same AWS environment and credentials file.
func (l *S3Location) DriverParameters() map[string]any {
	p := map[string]any{
		"bucket":         l.Bucket,
		"region":         l.Region,
		"forcepathstyle": true,
		"secure":         !strings.HasPrefix(l.Endpoint, "http://"),
		"v4auth":         true,
	}
	if l.Endpoint != "" {
		p["regionendpoint"] = l.Endpoint
	}
	if l.Prefix != "" {
		p["rootdirectory"] = "/" + l.Prefix
	}
	return p
}

// RedirectDisabled is the value of distribution's storage.redirect section:
// clients are not sent to the bucket (they may not reach it).
var RedirectDisabled = map[string]any{"disable": true}

// Storage is distribution's storage configuration for this location: the
// s3 driver's parameters and redirects disabled.
func (l *S3Location) Storage() configuration.Storage {
	return configuration.Storage{"s3": l.DriverParameters(), "redirect": RedirectDisabled}
}
