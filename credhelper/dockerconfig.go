package credhelper

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// The keys of Docker's config.json that decide which credential store the
// Docker CLI uses for a registry (cli/config/configfile.ConfigFile).
const (
	keyAuths       = "auths"
	keyCredsStore  = "credsStore"
	keyCredHelpers = "credHelpers"
)

// Change records what Register did to a Docker config, so that Unregister
// can undo exactly that and nothing else. It holds no secrets (see Edit)
// and is meant to be kept in the agent's state between join and leave.
// A Register that found everything in place returns a Change with no
// Edits; keep the Change of the Register that did the work.
type Change struct {
	// HostPort and Helper are the credHelpers entry Register made sure of.
	HostPort string `json:"hostPort"`
	Helper   string `json:"helper"`
	// SetHelper reports that Register added credHelpers[HostPort] or
	// changed it from PreviousHelper.
	SetHelper      bool   `json:"setHelper,omitempty"`
	PreviousHelper string `json:"previousHelper,omitempty"`
	// CreatedCredHelpers reports that Register created the credHelpers
	// object (or replaced a null one).
	CreatedCredHelpers bool `json:"createdCredHelpers,omitempty"`
	// CredsStore is the credsStore Register set because the config had no
	// credentials configured at all: adding credHelpers would otherwise stop
	// Docker from using the platform's default store (DefaultCredsStore) for
	// the user's other registries.
	CredsStore string `json:"credsStore,omitempty"`
	// Edits are Register's splices, in order; Before and After the SHA-256
	// of the config before and after them.
	Edits  []Edit `json:"edits,omitempty"`
	Before string `json:"before"`
	After  string `json:"after"`

	// Existed and CreatedDirs are set by RegisterFile: whether config.json
	// existed before, and the directories it created for it, outermost
	// first. UnregisterFile removes a file (and the directories, if empty)
	// that did not exist before.
	Existed     bool     `json:"existed"`
	CreatedDirs []string `json:"createdDirs,omitempty"`
}

// Changed reports whether Register edited the config.
func (c Change) Changed() bool { return len(c.Edits) > 0 }

// dockerView is the part of Docker's config that decides credential
// lookups, decoded as the Docker CLI decodes it (encoding/json, keys
// matched case-insensitively). A value of the wrong type makes the CLI
// discard the whole file, so it is malformed here too.
type dockerView struct {
	Auths       map[string]struct{} `json:"auths"`
	CredsStore  string              `json:"credsStore"`
	CredHelpers map[string]string   `json:"credHelpers"`
}

// containsAuth is the Docker CLI's ConfigFile.ContainsAuth: when false, the
// CLI picks the platform's default credsStore itself.
func (v dockerView) containsAuth() bool {
	return v.CredsStore != "" || len(v.CredHelpers) > 0 || len(v.Auths) > 0
}

// parseDockerConfig checks doc and decodes its view. A blank document is an
// empty config, as the Docker CLI reads it.
func parseDockerConfig(doc []byte) (dockerView, error) {
	var v dockerView
	if isBlank(doc) {
		return v, nil
	}
	if err := json.Unmarshal(doc, &v); err != nil {
		return dockerView{}, fmt.Errorf("parsing docker config: %w", malformed(err))
	}
	if _, err := parseTop(doc); err != nil { // `null` decodes without error
		return dockerView{}, fmt.Errorf("parsing docker config: %w: %w", ErrMalformed, err)
	}
	return v, nil
}

func isBlank(doc []byte) bool { return len(bytes.TrimSpace(doc)) == 0 }

func digest(doc []byte) string {
	sum := sha256.Sum256(doc)
	return hex.EncodeToString(sum[:])
}

// Register returns config with credHelpers[hostPort] = helper, every other
// byte kept: keys, their order, values, indentation and line endings. The
// new entry goes last in credHelpers (created last in the top-level object
// if absent), laid out like its neighbours. hostPort may be given as a URL;
// it is reduced to host:port as the store does.
//
// defaultStore is DefaultCredsStore for this machine. When config has no
// credsStore, no auths and no credHelpers, Docker uses defaultStore for
// every registry; a credHelpers entry would end that, so Register then also
// sets "credsStore": defaultStore (recorded in the Change), keeping the
// user's other registries where they were.
//
// A config that does not parse, or whose credsStore, credHelpers or auths
// has a type Docker would reject, is refused with an error wrapping
// ErrMalformed; a blank config is an empty one. Registering again is a
// no-op with an empty Change.
func Register(config []byte, hostPort, helper, defaultStore string) ([]byte, Change, error) {
	key, err := normalizeServerURL(hostPort)
	if err != nil {
		return nil, Change{}, fmt.Errorf("registering credential helper for %q: %w", hostPort, err)
	}
	if helper == "" {
		return nil, Change{}, errors.New("registering credential helper: no helper name")
	}
	view, err := parseDockerConfig(config)
	if err != nil {
		return nil, Change{}, err
	}
	ch := Change{HostPort: key, Helper: helper, Before: digest(config)}
	e := &editor{doc: bytes.Clone(config)}
	if isBlank(config) {
		e.splice(0, len(config), "{}\n")
	}
	if !view.containsAuth() && defaultStore != "" {
		if err := e.setTop(keyCredsStore, quote(defaultStore)); err != nil {
			return nil, Change{}, err
		}
		ch.CredsStore = defaultStore
	}
	if prev, ok := view.CredHelpers[key]; !ok || prev != helper {
		created, err := e.setNested(keyCredHelpers, key, quote(helper))
		if err != nil {
			return nil, Change{}, err
		}
		ch.SetHelper, ch.PreviousHelper, ch.CreatedCredHelpers = true, prev, created
	}
	ch.Edits = e.edits
	ch.After = digest(e.doc)
	return e.doc, ch, nil
}

// Applied reports whether config shows the Change ch made: config is what
// Register returned, or, edited since, it maps ch.HostPort to ch.Helper
// where Register found another helper or none (only Register's caller
// writes that entry). A caller that recorded ch before the write
// (WithIntent) learns from it, after a crash, whether the write happened:
// if so the entry is its own, for Unregister to undo; if not, nothing of ch
// is in config.
func Applied(config []byte, ch Change) bool {
	if !ch.Changed() {
		return false
	}
	if digest(config) == ch.After {
		return true
	}
	if !ch.SetHelper {
		return false
	}
	view, err := parseDockerConfig(config)
	return err == nil && view.CredHelpers[ch.HostPort] == ch.Helper
}

// Unregister undoes ch on config. If config is still exactly what Register
// returned, it returns the bytes Register was given. Otherwise someone
// edited it since, and Unregister removes only what Register added and is
// still as Register left it: credHelpers[HostPort] (or restores
// PreviousHelper), the credHelpers object if Register created it and it is
// now empty, and the credsStore it set, if that still reads the same and
// nothing else (no credHelpers, no auths) remains to need it. A Change with
// nothing to undo leaves config as it is.
func Unregister(config []byte, ch Change) ([]byte, error) {
	if ch.Changed() && digest(config) == ch.After {
		if orig, ok := undoEdits(bytes.Clone(config), ch.Edits); ok && digest(orig) == ch.Before {
			return orig, nil
		}
	}
	if (!ch.SetHelper && ch.CredsStore == "") || isBlank(config) {
		return config, nil
	}
	view, err := parseDockerConfig(config)
	if err != nil {
		return nil, err
	}
	e := &editor{doc: bytes.Clone(config)}
	if ch.SetHelper && view.CredHelpers[ch.HostPort] == ch.Helper {
		if ch.PreviousHelper != "" {
			if _, err := e.setNested(keyCredHelpers, ch.HostPort, quote(ch.PreviousHelper)); err != nil {
				return nil, err
			}
		} else if err := e.removeNested(keyCredHelpers, ch.HostPort, ch.CreatedCredHelpers); err != nil {
			return nil, err
		}
	}
	if ch.CredsStore != "" {
		view, err := parseDockerConfig(e.doc)
		if err != nil {
			return nil, err
		}
		if view.CredsStore == ch.CredsStore && len(view.CredHelpers) == 0 && len(view.Auths) == 0 {
			if err := e.removeTop(keyCredsStore); err != nil {
				return nil, err
			}
		}
	}
	return e.doc, nil
}

// setTop sets a top-level member.
func (e *editor) setTop(key, value string) error {
	top, err := parseTop(e.doc)
	if err != nil {
		return err
	}
	return e.setMember(top, key, value)
}

// removeTop removes a top-level member if present.
func (e *editor) removeTop(key string) error {
	top, err := parseTop(e.doc)
	if err != nil {
		return err
	}
	i, err := top.find(key)
	if err != nil || i < 0 {
		return err
	}
	e.removeMember(top, i)
	return nil
}

// nested locates the object value of the top-level member parent; ok is
// false when parent is absent or null.
func (e *editor) nested(parent string) (o object, ok bool, err error) {
	top, err := parseTop(e.doc)
	if err != nil {
		return object{}, false, err
	}
	i, err := top.find(parent)
	if err != nil || i < 0 {
		return object{}, false, err
	}
	m := top.members[i]
	if string(e.doc[m.valueStart:m.valueEnd]) == "null" {
		return object{}, false, nil
	}
	o, err = parseObject(e.doc, m.valueStart)
	if err != nil {
		return object{}, false, fmt.Errorf("%s: %w", parent, err)
	}
	return o, true, nil
}

// setNested sets parent[key] = value, creating the parent object (created
// is then true) where it is absent or null.
func (e *editor) setNested(parent, key, value string) (created bool, err error) {
	o, ok, err := e.nested(parent)
	if err != nil {
		return false, err
	}
	if !ok {
		if err := e.setTop(parent, "{}"); err != nil {
			return false, err
		}
		if o, _, err = e.nested(parent); err != nil {
			return false, err
		}
	}
	return !ok, e.setMember(o, key, value)
}

// removeNested removes parent[key] if present, and parent with it when
// dropEmpty is set and nothing else is left in it.
func (e *editor) removeNested(parent, key string, dropEmpty bool) error {
	o, ok, err := e.nested(parent)
	if err != nil || !ok {
		return err
	}
	i, err := o.find(key)
	if err != nil || i < 0 {
		return err
	}
	if len(o.members) == 1 && dropEmpty {
		return e.removeTop(parent)
	}
	e.removeMember(o, i)
	return nil
}
