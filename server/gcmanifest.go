package server

import (
	"encoding/json"
	"fmt"
)

// manifestRefs are what one manifest points at, whatever its media type:
// Docker v2 schema2 and OCI image manifests (config, layers), Docker
// manifest lists and OCI indexes (manifests), OCI artifact manifests
// (blobs), the OCI 1.1 subject, and schema1 fsLayers for stores written by
// old registries.
type manifestRefs struct {
	blobs     []digest // content this manifest needs: config, layers
	manifests []digest // child manifests of an index or list
	subject   digest   // the manifest this one refers to (OCI referrers), or ""
}

type jsonDescriptor struct {
	Digest string `json:"digest"`
}

// parseManifestRefs reads the references of a manifest. Malformed digests
// are an error: a reference the collector cannot follow must stop it, not
// be silently dropped.
func parseManifestRefs(b []byte) (manifestRefs, error) {
	var m struct {
		Config    *jsonDescriptor  `json:"config"`
		Layers    []jsonDescriptor `json:"layers"`
		Blobs     []jsonDescriptor `json:"blobs"`
		Manifests []jsonDescriptor `json:"manifests"`
		Subject   *jsonDescriptor  `json:"subject"`
		FSLayers  []struct {
			BlobSum string `json:"blobSum"`
		} `json:"fsLayers"`
	}
	var r manifestRefs
	if err := json.Unmarshal(b, &m); err != nil {
		return r, fmt.Errorf("parsing manifest: %w", err)
	}
	add := func(list *[]digest, s string) error {
		d, err := parseDigest(s)
		if err != nil {
			return fmt.Errorf("parsing manifest: %w", err)
		}
		*list = append(*list, d)
		return nil
	}
	if m.Config != nil && m.Config.Digest != "" {
		if err := add(&r.blobs, m.Config.Digest); err != nil {
			return r, err
		}
	}
	for _, group := range [][]jsonDescriptor{m.Layers, m.Blobs} {
		for _, l := range group {
			if err := add(&r.blobs, l.Digest); err != nil {
				return r, err
			}
		}
	}
	for _, l := range m.FSLayers {
		if err := add(&r.blobs, l.BlobSum); err != nil {
			return r, err
		}
	}
	for _, c := range m.Manifests {
		if err := add(&r.manifests, c.Digest); err != nil {
			return r, err
		}
	}
	if m.Subject != nil && m.Subject.Digest != "" {
		d, err := parseDigest(m.Subject.Digest)
		if err != nil {
			return r, fmt.Errorf("parsing manifest subject: %w", err)
		}
		r.subject = d
	}
	return r, nil
}
