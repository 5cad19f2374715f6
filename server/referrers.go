package server

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/distribution/distribution/v3/registry/api/errcode"
)

// The OCI 1.1 referrers API, GET /v2/<name>/referrers/<digest>, which
// distribution v3 does not have: an OCI image index of the manifests of
// the repository whose subject is the digest, from the referrers index
// (referrersindex.go). The access layer routes the path here with the pull
// role (access.go); the manifest PUT hook that fills the index and answers
// OCI-Subject is in putManifest (gcguard.go).

// routeReferrers is the route name in metrics, logs and the role table.
const routeReferrers = "referrers"

const mediaTypeOCIIndex = "application/vnd.oci.image.index.v1+json"

// defaultReferrersPage is how many descriptors one response lists at most;
// a longer list continues at the URL in the Link header (rel="next").
const defaultReferrersPage = 1000

// referrersPathRE matches the referrers route; the name is checked by the
// access layer, the digest here.
var referrersPathRE = regexp.MustCompile(`^/v2/(.+)/referrers/([^/]+)$`)

// matchReferrersPath returns the repository and the digest of a referrers
// API path.
func matchReferrersPath(p string) (repo, ref string, ok bool) {
	m := referrersPathRE.FindStringSubmatch(p)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// digestFormRE is a digest's general grammar (OCI image spec): what does
// not match is malformed; what matches but parseDigest refuses is an
// algorithm (or encoding) this registry does not support.
var digestFormRE = regexp.MustCompile(`^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$`)

// referrersHandler answers the referrers API.
type referrersHandler struct {
	idx      *referrersIndex
	log      *slog.Logger
	pageSize int // zero: defaultReferrersPage
}

func (h *referrersHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	repo, ref, ok := matchReferrersPath(r.URL.Path)
	if !ok {
		writeError(w, errcode.ErrorCodeNameUnknown.WithMessage("not a referrers path"))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeErrorStatus(w, http.StatusMethodNotAllowed, errcode.ErrorCodeUnsupported.WithMessage(
			fmt.Sprintf("%s is not supported on the referrers API: use GET", r.Method)))
		return
	}
	subject, err := parseDigest(ref)
	if err != nil {
		msg := fmt.Sprintf("invalid digest %q: want <algorithm>:<hex>", ref)
		if digestFormRE.MatchString(ref) {
			msg = fmt.Sprintf("unsupported digest %q: sha256 or sha512, lower-case hex", ref)
		}
		writeError(w, errcode.ErrorCodeDigestInvalid.WithMessage(msg))
		return
	}
	q := r.URL.Query()
	var last digest
	if l := q.Get("last"); l != "" {
		if last, err = parseDigest(l); err != nil {
			writeError(w, errcode.ErrorCodePaginationNumberInvalid.WithMessage(fmt.Sprintf("invalid last %q: want a digest from a Link header", l)))
			return
		}
	}
	all, err := h.idx.list(r.Context(), repo, subject)
	if err != nil {
		h.log.Error("listing referrers", "repo", repo, "subject", subject, "err", err)
		writeError(w, errcode.ErrorCodeUnknown.WithMessage("listing referrers failed"))
		return
	}
	types := q["artifactType"]
	if len(types) > 0 {
		all = slices.DeleteFunc(all, func(d ociDescriptor) bool { return !slices.Contains(types, d.ArtifactType) })
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	if last != "" {
		i, _ := slices.BinarySearchFunc(all, last, func(d ociDescriptor, t digest) int { return compareEntryOrder(digest(d.Digest), t) })
		if i < len(all) && all[i].Digest == last.String() {
			i++
		}
		all = all[i:]
	}
	page := h.pageSize
	if page <= 0 {
		page = defaultReferrersPage
	}
	if len(all) > page {
		all = all[:page]
		next := url.Values{}
		for _, t := range types {
			next.Add("artifactType", t)
		}
		next.Set("last", all[len(all)-1].Digest)
		w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, r.URL.Path, next.Encode()))
	}
	w.Header().Set("Content-Type", mediaTypeOCIIndex)
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	_ = jsonEncode(w, struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     string          `json:"mediaType"`
		Manifests     []ociDescriptor `json:"manifests"`
	}{2, mediaTypeOCIIndex, all})
}

// compareEntryOrder orders digests as the index lists them (by entry
// file name: "<alg>-<hex>.json").
func compareEntryOrder(a, b digest) int {
	return strings.Compare(a.Algorithm()+"-"+a.Encoded(), b.Algorithm()+"-"+b.Encoded())
}

// subjectWriter adds OCI-Subject to a manifest PUT's 201: the registry
// indexed the manifest as a referrer of that subject, so the client need
// not fall back to the referrers tag schema.
type subjectWriter struct {
	http.ResponseWriter
	subject digest
	wrote   bool
}

func (s *subjectWriter) WriteHeader(code int) {
	if !s.wrote && code == http.StatusCreated {
		s.Header().Set("OCI-Subject", s.subject.String())
	}
	s.wrote = true
	s.ResponseWriter.WriteHeader(code)
}

func (s *subjectWriter) Write(p []byte) (int, error) {
	if !s.wrote {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(p)
}

func (s *subjectWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// indexReferrer is the manifest PUT hook: a manifest with a subject is
// indexed before distribution stores it (so that no manifest that exists
// lacks its entry, whatever crashes), and its 201 carries OCI-Subject. A
// malformed subject or artifactType is refused here with nothing stored.
// It returns the writer to answer with, or false when it answered.
func (g *storageGuard) indexReferrer(w http.ResponseWriter, r *http.Request, repo, reference string, body []byte) (http.ResponseWriter, bool) {
	alg := "sha256"
	ref, refErr := parseDigest(reference)
	if refErr == nil {
		alg = ref.Algorithm()
	}
	subject, desc, err := referrerOf(body, r.Header.Get("Content-Type"), alg)
	if err != nil {
		writeError(w, errcode.ErrorCodeManifestInvalid.WithMessage(err.Error()))
		return w, false
	}
	if subject == "" || g.referrers == nil {
		return w, true
	}
	if refErr == nil && desc.Digest != ref.String() {
		return w, true // distribution refuses the digest mismatch
	}
	if err := g.referrers.add(r.Context(), repo, subject, desc); err != nil {
		g.log.Error("indexing referrer", "repo", repo, "subject", subject, "referrer", desc.Digest, "err", err)
		writeError(w, errcode.ErrorCodeUnknown.WithMessage("indexing the manifest as a referrer failed"))
		return w, false
	}
	return &subjectWriter{ResponseWriter: w, subject: subject}, true
}
