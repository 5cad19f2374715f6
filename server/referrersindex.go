package server

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// The referrers index: for each repository and subject digest, one small
// file per referrer holding the referrer's descriptor, under
//
//	repositories/<repo>/_edgecr_referrers/<alg>/<hex>/<alg>-<hex>.json
//
// (subject, then referrer), next to distribution's _manifests. Distribution
// and the collector skip directories whose name starts with "_".
//
// Writes go through the storage driver (edgecrfs: every write durable
// before the next starts), and an entry is written before the manifest
// PUT is handed to distribution. So after a crash at any point, every
// manifest that exists has its entry; an entry whose manifest does not
// exist (the push failed or was cut, or the manifest was deleted since)
// is not listed: a listing checks each entry's revision link. Tag moves do
// not touch the index (referrers belong to digests, not tags).
//
// A repository whose index was never built (a store written before this
// version, or an index directory lost or removed) has no "complete"
// marker: the first listing rebuilds the index by a scan of the
// repository's revisions, then writes the marker.
const referrersDirName = "_edgecr_referrers"

func referrersDir(repo string) string { return path.Join(repoDir(repo), referrersDirName) }

func referrersSubjectDir(repo string, subject digest) string {
	return path.Join(referrersDir(repo), subject.Algorithm(), subject.Encoded())
}

func referrerEntryPath(repo string, subject, referrer digest) string {
	return path.Join(referrersSubjectDir(repo, subject), referrer.Algorithm()+"-"+referrer.Encoded()+".json")
}

func referrersMarker(repo string) string { return path.Join(referrersDir(repo), "complete") }

// ociDescriptor is an OCI content descriptor as the referrers API lists it.
type ociDescriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// mediaTypeRE is the media type grammar of the OCI image spec (RFC 6838
// names, no parameters).
var mediaTypeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$`)

// errReferrerInvalid marks a manifest whose subject or artifactType is
// malformed: the PUT is refused with MANIFEST_INVALID.
var errReferrerInvalid = errors.New("invalid manifest")

// referrerOf reads what the referrers index needs from a manifest body: its
// subject (empty when it has none) and the descriptor it is listed with.
// contentType is the PUT's Content-Type, used when the body names no
// media type. alg is the digest algorithm the manifest is addressed by.
func referrerOf(body []byte, contentType, alg string) (subject digest, desc ociDescriptor, err error) {
	var m struct {
		MediaType    string            `json:"mediaType"`
		ArtifactType *string           `json:"artifactType"`
		Annotations  map[string]string `json:"annotations"`
		Config       *struct {
			MediaType string `json:"mediaType"`
		} `json:"config"`
		Subject json.RawMessage `json:"subject"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return "", desc, nil // not JSON: distribution refuses it
	}
	if m.ArtifactType != nil && !mediaTypeRE.MatchString(*m.ArtifactType) {
		return "", desc, fmt.Errorf("%w: artifactType %q is not a media type", errReferrerInvalid, *m.ArtifactType)
	}
	if len(m.Subject) == 0 || string(m.Subject) == "null" {
		return "", desc, nil
	}
	var s struct {
		MediaType *string `json:"mediaType"`
		Digest    *string `json:"digest"`
		Size      *int64  `json:"size"`
	}
	if err := json.Unmarshal(m.Subject, &s); err != nil {
		return "", desc, fmt.Errorf("%w: subject is not a descriptor: %v", errReferrerInvalid, err)
	}
	if s.MediaType == nil || s.Digest == nil || s.Size == nil {
		return "", desc, fmt.Errorf("%w: subject is not a descriptor: mediaType, digest and size are required", errReferrerInvalid)
	}
	if !mediaTypeRE.MatchString(*s.MediaType) {
		return "", desc, fmt.Errorf("%w: subject mediaType %q is not a media type", errReferrerInvalid, *s.MediaType)
	}
	if *s.Size < 0 {
		return "", desc, fmt.Errorf("%w: subject size %d is negative", errReferrerInvalid, *s.Size)
	}
	if subject, err = parseDigest(*s.Digest); err != nil {
		return "", desc, fmt.Errorf("%w: subject digest: %v (sha256 or sha512, lower-case hex)", errReferrerInvalid, err)
	}
	d, err := digestOf(body, alg)
	if err != nil {
		return "", desc, err
	}
	desc = ociDescriptor{MediaType: m.MediaType, Digest: d.String(), Size: int64(len(body)), Annotations: m.Annotations}
	if desc.MediaType == "" {
		desc.MediaType, _, _ = strings.Cut(contentType, ";")
		desc.MediaType = strings.TrimSpace(desc.MediaType)
	}
	switch {
	case m.ArtifactType != nil:
		desc.ArtifactType = *m.ArtifactType
	case m.Config != nil:
		// The image spec: without artifactType, an image manifest's
		// artifact type is its config's media type.
		desc.ArtifactType = m.Config.MediaType
	}
	return subject, desc, nil
}

// digestOf is the digest of b with the algorithm alg.
func digestOf(b []byte, alg string) (digest, error) {
	switch alg {
	case "sha256":
		s := sha256.Sum256(b)
		return digest("sha256:" + hex.EncodeToString(s[:])), nil
	case "sha512":
		s := sha512.Sum512(b)
		return digest("sha512:" + hex.EncodeToString(s[:])), nil
	}
	return "", fmt.Errorf("digesting manifest: unsupported algorithm %q", alg)
}

// referrersIndex keeps the index on a storage driver.
type referrersIndex struct {
	d storagedriver.StorageDriver
	// counted, when set, is told how many bytes each write adds to the
	// storage (the usage counter: quota counts the index too).
	counted func(delta int64)
}

// put writes b at p and reports the growth to counted.
func (x *referrersIndex) put(ctx context.Context, p string, b []byte) error {
	var old int64
	if x.counted != nil {
		if fi, err := x.d.Stat(ctx, p); err == nil {
			old = fi.Size()
		}
	}
	if err := x.d.PutContent(ctx, p, b); err != nil {
		return err
	}
	if x.counted != nil {
		x.counted(int64(len(b)) - old)
	}
	return nil
}

// add records desc as a referrer of subject in repo.
func (x *referrersIndex) add(ctx context.Context, repo string, subject digest, desc ociDescriptor) error {
	d, err := parseDigest(desc.Digest)
	if err != nil {
		return fmt.Errorf("indexing referrer: %w", err)
	}
	b, err := json.Marshal(desc)
	if err != nil {
		return fmt.Errorf("indexing referrer %s: %w", d, err)
	}
	if err := x.put(ctx, referrerEntryPath(repo, subject, d), b); err != nil {
		return fmt.Errorf("indexing referrer %s of %s: %w", d, subject, err)
	}
	return nil
}

// list returns the referrers of subject in repo whose manifests exist,
// sorted by digest. The index is rebuilt first when it is missing.
func (x *referrersIndex) list(ctx context.Context, repo string, subject digest) ([]ociDescriptor, error) {
	if err := x.ensure(ctx, repo); err != nil {
		return nil, err
	}
	dir := referrersSubjectDir(repo, subject)
	names, err := x.d.List(ctx, dir)
	if isNotFound(err) {
		return []ociDescriptor{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing referrers of %s: %w", subject, err)
	}
	slices.Sort(names)
	out := []ociDescriptor{}
	for _, p := range names {
		b, err := x.d.GetContent(ctx, p)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading referrer entry %s: %w", p, err)
		}
		var desc ociDescriptor
		if err := json.Unmarshal(b, &desc); err != nil {
			continue // a torn entry (not possible on edgecrfs): its manifest is re-indexed by a rebuild
		}
		d, err := parseDigest(desc.Digest)
		if err != nil || path.Base(p) != d.Algorithm()+"-"+d.Encoded()+".json" {
			continue
		}
		if _, err := x.d.Stat(ctx, path.Join(revisionLinkDir(repo, d), "link")); err != nil {
			if isNotFound(err) {
				continue // deleted, or a push that did not complete
			}
			return nil, fmt.Errorf("checking referrer %s: %w", d, err)
		}
		out = append(out, desc)
	}
	return out, nil
}

// ensure rebuilds repo's index when its marker is missing.
func (x *referrersIndex) ensure(ctx context.Context, repo string) error {
	_, err := x.d.Stat(ctx, referrersMarker(repo))
	if err == nil {
		return nil
	}
	if !isNotFound(err) {
		return fmt.Errorf("checking referrers index of %s: %w", repo, err)
	}
	return x.rebuild(ctx, repo)
}

// rebuild indexes every revision of repo that has a subject, then writes
// the marker. A repository that does not exist gets no index (and no
// directory). A manifest pushed by sha512 is listed by its sha512, not
// also by the sha256 revision distribution keeps it under (sha512.go).
func (x *referrersIndex) rebuild(ctx context.Context, repo string) error {
	revs := path.Join(repoDir(repo), "_manifests", "revisions")
	algs, err := x.d.List(ctx, revs)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("rebuilding referrers index of %s: %w", repo, err)
	}
	stored := map[digest]digest{} // revision -> where its content is
	aliased := map[digest]bool{}  // sha256 revisions a sha512 one links to
	for _, a := range algs {
		hexes, err := x.d.List(ctx, a)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("rebuilding referrers index of %s: %w", repo, err)
		}
		for _, h := range hexes {
			d, err := parseDigest(path.Base(a) + ":" + path.Base(h))
			if err != nil {
				continue
			}
			stored[d] = d
			if d.Algorithm() == "sha256" {
				continue
			}
			l, err := x.d.GetContent(ctx, path.Join(revisionLinkDir(repo, d), "link"))
			if err != nil {
				continue
			}
			if cd, err := parseDigest(strings.TrimSpace(string(l))); err == nil && cd != d {
				stored[d] = cd
				aliased[cd] = true
			}
		}
	}
	for d, data := range stored {
		if aliased[d] {
			continue
		}
		if fi, err := x.d.Stat(ctx, blobDataPath(data)); err != nil || fi.Size() > maxManifestSize {
			continue // missing, or not a manifest distribution would have taken
		}
		b, err := x.d.GetContent(ctx, blobDataPath(data))
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("rebuilding referrers index of %s: reading manifest %s: %w", repo, d, err)
		}
		subject, desc, err := referrerOf(b, "", d.Algorithm())
		if err != nil || subject == "" || desc.Digest != d.String() {
			continue
		}
		if err := x.add(ctx, repo, subject, desc); err != nil {
			return fmt.Errorf("rebuilding referrers index of %s: %w", repo, err)
		}
	}
	if err := x.put(ctx, referrersMarker(repo), []byte("1\n")); err != nil {
		return fmt.Errorf("rebuilding referrers index of %s: %w", repo, err)
	}
	return nil
}
