package credhelper

import (
	"encoding/json"
	"fmt"
	"slices"
)

// Foreign lists what config already has for hostPort that is not helper's:
// a credHelpers entry naming another helper, and auths entries (a `docker
// login`, keyed by host:port or by a URL of it). Register would replace the
// first and shadow the second, so a caller asks before it registers. Each
// is described as it reads in config.json, e.g. `credHelpers["h:1"] =
// "ecr-login"`. A config that does not parse is an error (ErrMalformed).
func Foreign(config []byte, hostPort, helper string) ([]string, error) {
	key, err := normalizeServerURL(hostPort)
	if err != nil {
		return nil, fmt.Errorf("checking docker config for %q: %w", hostPort, err)
	}
	if isBlank(config) {
		return nil, nil
	}
	if _, err := parseDockerConfig(config); err != nil {
		return nil, err
	}
	var doc struct {
		Auths       map[string]json.RawMessage `json:"auths"`
		CredHelpers map[string]string          `json:"credHelpers"`
	}
	if err := json.Unmarshal(config, &doc); err != nil {
		return nil, fmt.Errorf("parsing docker config: %w", malformed(err))
	}
	var out []string
	for k, v := range doc.CredHelpers {
		if n, err := normalizeServerURL(k); err == nil && n == key && v != helper {
			out = append(out, fmt.Sprintf("credHelpers[%q] = %q", k, v))
		}
	}
	for k := range doc.Auths {
		if n, err := normalizeServerURL(k); err == nil && n == key {
			out = append(out, fmt.Sprintf("auths[%q] (a docker login)", k))
		}
	}
	slices.Sort(out)
	return out, nil
}
