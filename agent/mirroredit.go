package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// The edits `edgecr join --mirror` makes to runtime configuration files,
// as pure functions of a file's content: each is idempotent and has an
// inverse that removes only what it added, for a file the user changed
// after the join (otherwise leave puts the bytes from before back).

// dockerAddMirror adds url to daemon.json's registry-mirrors, keeping
// every other key (re-encoded, values as they were). Empty content is a
// file that does not exist.
func dockerAddMirror(content []byte, url string) ([]byte, error) {
	m, err := parseDaemonJSON(content)
	if err != nil {
		return nil, err
	}
	mirrors, err := daemonMirrors(m)
	if err != nil {
		return nil, err
	}
	if slices.Contains(mirrors, url) {
		return content, nil
	}
	return encodeDaemonJSON(m, append(mirrors, url))
}

// dockerRemoveMirror takes url out of registry-mirrors (and the key, when
// no mirror is left); changed is false when it was not there.
func dockerRemoveMirror(content []byte, url string) (out []byte, changed bool, err error) {
	m, err := parseDaemonJSON(content)
	if err != nil {
		return nil, false, err
	}
	mirrors, err := daemonMirrors(m)
	if err != nil {
		return nil, false, err
	}
	i := slices.Index(mirrors, url)
	if i < 0 {
		return content, false, nil
	}
	out, err = encodeDaemonJSON(m, slices.Delete(mirrors, i, i+1))
	return out, true, err
}

// dockerHasMirror reports whether daemon.json lists url.
func dockerHasMirror(content []byte, url string) bool {
	m, err := parseDaemonJSON(content)
	if err != nil {
		return false
	}
	mirrors, err := daemonMirrors(m)
	return err == nil && slices.Contains(mirrors, url)
}

func parseDaemonJSON(content []byte) (map[string]json.RawMessage, error) {
	m := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(content)) == 0 {
		return m, nil
	}
	d := json.NewDecoder(bytes.NewReader(content))
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("parsing Docker's daemon.json: %w", err)
	}
	if d.More() {
		return nil, fmt.Errorf("parsing Docker's daemon.json: text after the object")
	}
	if m == nil { // the file says null
		return nil, fmt.Errorf("parsing Docker's daemon.json: not a JSON object")
	}
	return m, nil
}

const daemonMirrorsKey = "registry-mirrors"

func daemonMirrors(m map[string]json.RawMessage) ([]string, error) {
	raw, ok := m[daemonMirrorsKey]
	if !ok {
		return nil, nil
	}
	var s []string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("parsing Docker's daemon.json: %s is not a list of URLs: %w", daemonMirrorsKey, err)
	}
	return s, nil
}

// dockerDropMirrorExplicit takes url out of registry-mirrors but keeps the
// key, [] when no mirror is left: dockerd's live reload changes only the
// options a file sets, so a daemon.json without the key would leave the
// mirror in force until a restart.
func dockerDropMirrorExplicit(content []byte, url string) ([]byte, error) {
	m, err := parseDaemonJSON(content)
	if err != nil {
		return nil, err
	}
	mirrors, err := daemonMirrors(m)
	if err != nil {
		return nil, err
	}
	mirrors = slices.DeleteFunc(mirrors, func(s string) bool { return s == url })
	b, err := json.Marshal(append([]string{}, mirrors...))
	if err != nil {
		return nil, err
	}
	m[daemonMirrorsKey] = b
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding Docker's daemon.json: %w", err)
	}
	return append(out, '\n'), nil
}

func encodeDaemonJSON(m map[string]json.RawMessage, mirrors []string) ([]byte, error) {
	if len(mirrors) == 0 {
		delete(m, daemonMirrorsKey)
	} else {
		b, err := json.Marshal(mirrors)
		if err != nil {
			return nil, err
		}
		m[daemonMirrorsKey] = b
	}
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding Docker's daemon.json: %w", err)
	}
	return append(out, '\n'), nil
}

// The block join puts in a containerd hosts.toml.
const (
	hostsTOMLBegin = "# BEGIN edgecr mirror"
	hostsTOMLEnd   = "# END edgecr mirror"
)

// containerdHostsBlock is the hosts.toml table that makes url a mirror
// (pull and resolve only: never pushed to) trusted with caFile.
func containerdHostsBlock(url, caFile string) string {
	return fmt.Sprintf("%s\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = %q\n%s\n", hostsTOMLBegin, url, caFile, hostsTOMLEnd)
}

// containerdUpstream is the server line of a hosts.toml join creates: the
// registry itself, tried after the mirror.
func containerdUpstream(registry string) string {
	if registry == "docker.io" {
		return "https://registry-1.docker.io"
	}
	return "https://" + registry
}

// containerdAddMirror puts the mirror block first among the host tables
// (containerd tries hosts in file order) of a hosts.toml, replacing an
// earlier block of edgecr's. Empty content is a new file.
func containerdAddMirror(content []byte, registry, url, caFile string) ([]byte, error) {
	block := containerdHostsBlock(url, caFile)
	rest, _, err := containerdRemoveMirror(content)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(rest)) == 0 {
		return []byte(fmt.Sprintf("server = %q\n\n%s", containerdUpstream(registry), block)), nil
	}
	header := fmt.Sprintf("[host.%q]", url)
	lines := strings.SplitAfter(string(rest), "\n")
	for _, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "[host.") && strings.ReplaceAll(strings.TrimSpace(l), " ", "") == header {
			return nil, fmt.Errorf("the hosts.toml already has a table for %s", url)
		}
	}
	var b strings.Builder
	placed := false
	for _, l := range lines {
		if !placed && strings.HasPrefix(strings.TrimSpace(l), "[") {
			b.WriteString(block)
			b.WriteString("\n")
			placed = true
		}
		b.WriteString(l)
	}
	if !placed {
		if !strings.HasSuffix(b.String(), "\n") {
			b.WriteString("\n")
		}
		b.WriteString("\n")
		b.WriteString(block)
	}
	return []byte(b.String()), nil
}

// hostsTOMLBlockRE is a block of edgecr's exactly as join writes it; a
// block someone edited is theirs, and stays.
var hostsTOMLBlockRE = regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(hostsTOMLBegin) + `\n\[host\."[^"\n]*"\]\n  capabilities = \["pull", "resolve"\]\n  ca = "[^"\n]*"\n` + regexp.QuoteMeta(hostsTOMLEnd) + `\n`)

// containerdRemoveMirror removes edgecr's block (and the blank line join
// put beside it); changed is false when there was none.
func containerdRemoveMirror(content []byte) (out []byte, changed bool, err error) {
	s := string(content)
	loc := hostsTOMLBlockRE.FindStringIndex(s)
	if loc == nil {
		return content, false, nil
	}
	i, end := loc[0], loc[1]
	switch {
	case end < len(s) && s[end] == '\n':
		end++ // the blank line join put after a block that precedes tables
	case end == len(s) && i >= 2 && s[i-2:i] == "\n\n":
		i-- // the blank line join put before a block at the end
	}
	return []byte(s[:i] + s[end:]), true, nil
}

// containerdHasMirror reports whether a hosts.toml holds edgecr's block
// for url.
func containerdHasMirror(content []byte, url string) bool {
	return bytes.Contains(content, []byte(hostsTOMLBegin+"\n"+fmt.Sprintf("[host.%q]", url)))
}

// podmanDropIn is the registries.conf.d drop-in that makes mirror (a
// host:port) the first place podman and the other containers/image tools
// look for registry's images.
func podmanDropIn(registry, mirror string) []byte {
	return fmt.Appendf(nil, "# Written by edgecr join --mirror %s; edgecr leave removes it.\n[[registry]]\nprefix = %q\nlocation = %q\n\n[[registry.mirror]]\nlocation = %q\n",
		registry, registry, registry, mirror)
}
