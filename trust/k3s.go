package trust

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// k3sComment marks the registries.yaml line edgecr adds, for the human
// reader; removal does not depend on it.
const k3sComment = "# added by edgecr join"

// k3sLevels are the mapping keys above ca_file: configs."<registry>".tls.
func k3sLevels(registry string) []string { return []string{"configs", registry, "tls"} }

// MergeK3sRegistries adds configs."<registry>".tls.ca_file: caFile to the
// content of a k3s registries.yaml (empty for a new file), keeping every other
// entry. It edits the text in place where it can (inserting lines, so that
// RemoveK3sRegistries gives back the very same bytes) and otherwise
// re-encodes the document. An entry that already names another ca_file for
// the registry is ErrConflict; content that does not parse is
// ErrMalformedConfig. It is pure.
func MergeK3sRegistries(src []byte, registry, caFile string) (out []byte, changed bool, err error) {
	d, err := parseK3s(src)
	if err != nil {
		return nil, false, err
	}
	if d.top == nil {
		d.top = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		d.doc = &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{d.top}}
	}
	w, err := walkK3s(d.top, registry, true)
	if err != nil {
		return nil, false, err
	}
	if w.leaf != nil {
		if w.leaf.Kind == yaml.ScalarNode && w.leaf.Value == caFile {
			return src, false, nil
		}
		return nil, false, fmt.Errorf("merging registries.yaml: %w: configs.%q.tls.ca_file is already %q", ErrConflict, registry, w.leaf.Value)
	}
	m := w.maps[len(w.maps)-1]
	for _, name := range k3sLevels(registry)[len(w.keys):] {
		child := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		m.Content = append(m.Content, k3sKey(name, registry), child)
		m = child
	}
	val := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: caFile, Style: yaml.DoubleQuotedStyle, LineComment: k3sComment}
	for _, m := range w.maps {
		if m.Style&yaml.FlowStyle != 0 {
			val.LineComment = "" // a comment would break the flow mapping across lines
		}
	}
	m.Content = append(m.Content, k3sKey("ca_file", registry), val)
	want, err := encodeK3s(d)
	if err != nil {
		return nil, false, err
	}
	if text, ok := insertK3sText(src, registry, caFile); ok && sameYAML(text, want) {
		return text, true, nil
	}
	return want, true, nil
}

// RemoveK3sRegistries takes configs."<registry>".tls.ca_file back out of
// registries.yaml content if it still names caFile, and with it the tls,
// registry and configs mappings it leaves empty. Lines edgecr inserted are
// deleted as text, so a file MergeK3sRegistries edited comes back
// byte-identical; otherwise the document is re-encoded. It is pure.
func RemoveK3sRegistries(src []byte, registry, caFile string) (out []byte, changed bool, err error) {
	d, err := parseK3s(src)
	if err != nil {
		return nil, false, err
	}
	if d.top == nil {
		return src, false, nil
	}
	w, err := walkK3s(d.top, registry, false)
	if err != nil {
		return nil, false, err
	}
	if w.leaf == nil || w.leaf.Kind != yaml.ScalarNode || w.leaf.Value != caFile {
		return src, false, nil
	}
	// Delete ca_file, then each mapping that is left empty, bottom up.
	from := len(w.keys) // level of the topmost key removed: 3 is ca_file itself
	deleteKey(w.maps[3], "ca_file")
	for i := 2; i >= 0 && len(w.maps[i+1].Content) == 0; i-- {
		deleteKey(w.maps[i], w.keys[i].Value)
		from = i
	}
	var want []byte
	if len(d.top.Content) > 0 {
		if want, err = encodeK3s(d); err != nil {
			return nil, false, err
		}
	}
	if text, ok := deleteK3sText(src, registry, caFile, from); ok && sameYAML(text, want) {
		return text, true, nil
	}
	return want, true, nil
}

// k3sDoc is a parsed registries.yaml; top is nil when the file holds no
// document (empty, comments only, or null).
type k3sDoc struct {
	doc *yaml.Node
	top *yaml.Node
}

func parseK3s(src []byte) (*k3sDoc, error) {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return &k3sDoc{}, nil
	} else if err != nil {
		return nil, fmt.Errorf("parsing registries.yaml: %w: %w", ErrMalformedConfig, err)
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		if err == nil {
			err = errors.New("more than one YAML document")
		}
		return nil, fmt.Errorf("parsing registries.yaml: %w: %w", ErrMalformedConfig, err)
	}
	// Decoding into values catches what the node parser lets through, such
	// as duplicate keys, and k3s would reject.
	var v any
	if err := doc.Decode(&v); err != nil {
		return nil, fmt.Errorf("parsing registries.yaml: %w: %w", ErrMalformedConfig, err)
	}
	d := &k3sDoc{doc: &doc}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return d, nil
	}
	if doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("parsing registries.yaml: %w: top level is %s, want a mapping", ErrMalformedConfig, kindName(doc.Content[0]))
	}
	d.top = doc.Content[0]
	return d, nil
}

// k3sPath is what walkK3s found along configs."<registry>".tls.ca_file.
type k3sPath struct {
	maps    []*yaml.Node // existing mappings: top, configs, registry, tls
	keys    []*yaml.Node // key nodes of the levels found: configs, registry, tls
	leaf    *yaml.Node   // ca_file's value, if the tls mapping has one
	sawNull bool         // a level's value was null (treated as empty)
}

// walkK3s follows configs."<registry>".tls as far as it exists. With
// fillNulls, a null level becomes an empty mapping (for editing).
func walkK3s(top *yaml.Node, registry string, fillNulls bool) (k3sPath, error) {
	w := k3sPath{maps: []*yaml.Node{top}}
	m := top
	for _, name := range k3sLevels(registry) {
		k, v := lookupKey(m, name)
		if k == nil {
			return w, nil
		}
		switch {
		case v.Kind == yaml.MappingNode:
		case isNull(v):
			w.sawNull = true
			if !fillNulls {
				return w, nil
			}
			*v = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: v.Line, Column: v.Column}
		default:
			return w, fmt.Errorf("editing registries.yaml: %w: %s is %s, want a mapping", ErrMalformedConfig, strings.Join(pathTo(registry, len(w.keys)+1), "."), kindName(v))
		}
		w.keys = append(w.keys, k)
		w.maps = append(w.maps, v)
		m = v
	}
	if _, v := lookupKey(m, "ca_file"); v != nil {
		w.leaf = v
	}
	return w, nil
}

func pathTo(registry string, n int) []string {
	p := k3sLevels(registry)[:n]
	out := make([]string, len(p))
	for i, s := range p {
		if i == 1 {
			s = strconv.Quote(s)
		}
		out[i] = s
	}
	return out
}

func lookupKey(m *yaml.Node, key string) (k, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Kind == yaml.ScalarNode && m.Content[i].Value == key {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}

func deleteKey(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Kind == yaml.ScalarNode && m.Content[i].Value == key {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}

func k3sKey(name, registry string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: name}
	if name == registry {
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a sequence"
	case yaml.ScalarNode:
		return "a scalar"
	case yaml.AliasNode:
		return "an alias"
	case yaml.MappingNode:
		return "a mapping"
	default:
		return "a document"
	}
}

func encodeK3s(d *k3sDoc) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(d.doc); err != nil {
		return nil, fmt.Errorf("encoding registries.yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding registries.yaml: %w", err)
	}
	return buf.Bytes(), nil
}

// sameYAML reports whether a and b hold the same data (comments and layout
// aside); an empty document equals an empty mapping.
func sameYAML(a, b []byte) bool {
	var va, vb any
	if yaml.Unmarshal(a, &va) != nil || yaml.Unmarshal(b, &vb) != nil {
		return false
	}
	if va == nil {
		va = map[string]any{}
	}
	if vb == nil {
		vb = map[string]any{}
	}
	return reflect.DeepEqual(va, vb)
}

// k3sLines returns the lines edgecr inserts for the levels from `from` on
// (0 configs, 1 registry, 2 tls, 3 ca_file), without indentation.
func k3sLines(registry, caFile string, from int) []string {
	all := []string{"configs:", strconv.Quote(registry) + ":", "tls:", "ca_file: " + strconv.Quote(caFile) + " " + k3sComment}
	return all[from:]
}

func lineEnding(src []byte) string {
	if bytes.Contains(src, []byte("\r\n")) {
		return "\r\n"
	}
	return "\n"
}

// insertK3sText inserts the missing levels of the entry as new lines: right
// under the deepest existing block mapping's key, at its children's
// indentation, or at the end of the file when there is no configs key. ok is
// false when the layout is not one it handles (flow style, null levels, ...);
// the caller then re-encodes.
func insertK3sText(src []byte, registry, caFile string) ([]byte, bool) {
	d, err := parseK3s(src)
	if err != nil {
		return nil, false
	}
	nl := lineEnding(src)
	if d.top == nil {
		if d.doc != nil { // an explicit null document ("~"): no place to add keys
			return nil, false
		}
		return appendLines(src, k3sLines(registry, caFile, 0), 0, 2, nl), true
	}
	w, err := walkK3s(d.top, registry, false)
	if err != nil || w.sawNull || w.leaf != nil {
		return nil, false
	}
	for _, m := range w.maps {
		if m.Style&yaml.FlowStyle != 0 {
			return nil, false
		}
	}
	depth := len(w.keys)
	if depth == 0 {
		if len(d.top.Content) == 0 || d.top.Content[0].Column != 1 {
			return nil, false
		}
		return appendLines(src, k3sLines(registry, caFile, 0), 0, 2, nl), true
	}
	parent, children := w.keys[depth-1], w.maps[depth]
	if len(children.Content) == 0 {
		return nil, false
	}
	first := children.Content[0]
	indent := first.Column - 1
	step := indent - (parent.Column - 1)
	lines := bytes.SplitAfter(src, []byte("\n"))
	if step <= 0 || first.Line <= parent.Line || parent.Line > len(lines) {
		return nil, false
	}
	var block []byte
	for i, l := range k3sLines(registry, caFile, depth) {
		block = fmt.Appendf(block, "%s%s%s", strings.Repeat(" ", indent+i*step), l, nl)
	}
	var out []byte
	for _, l := range lines[:parent.Line] {
		out = append(out, l...)
	}
	out = append(out, block...)
	for _, l := range lines[parent.Line:] {
		out = append(out, l...)
	}
	return out, true
}

func appendLines(src []byte, lines []string, indent, step int, nl string) []byte {
	out := append([]byte(nil), src...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, nl...)
	}
	for i, l := range lines {
		out = fmt.Appendf(out, "%s%s%s", strings.Repeat(" ", indent+i*step), l, nl)
	}
	return out
}

// deleteK3sText deletes the lines of the removed levels (from `from` on) if
// they are exactly the lines insertK3sText writes, consecutive, starting at
// the topmost removed key. ok is false otherwise.
func deleteK3sText(src []byte, registry, caFile string, from int) ([]byte, bool) {
	d, err := parseK3s(src)
	if err != nil || d.top == nil {
		return nil, false
	}
	w, err := walkK3s(d.top, registry, false)
	if err != nil || w.leaf == nil {
		return nil, false
	}
	var k *yaml.Node
	if from < len(w.keys) {
		k = w.keys[from]
	} else {
		k, _ = lookupKey(w.maps[len(w.maps)-1], "ca_file")
	}
	lines := bytes.SplitAfter(src, []byte("\n"))
	want := k3sLines(registry, caFile, from)
	start := k.Line - 1
	if start+len(want) > len(lines) {
		return nil, false
	}
	for i, l := range want {
		got := strings.TrimRight(string(lines[start+i]), "\r\n")
		trimmed := strings.TrimLeft(got, " ")
		if i == 0 && len(got)-len(trimmed) != k.Column-1 {
			return nil, false
		}
		if trimmed != l && !(i == len(want)-1 && from <= 3 && isBareCAFileLine(trimmed, caFile)) {
			return nil, false
		}
	}
	var out []byte
	for i, l := range lines {
		if i < start || i >= start+len(want) {
			out = append(out, l...)
		}
	}
	return out, true
}

// isBareCAFileLine accepts our ca_file line with its comment edited or gone.
func isBareCAFileLine(line, caFile string) bool {
	prefix := "ca_file: " + strconv.Quote(caFile)
	rest, ok := strings.CutPrefix(line, prefix)
	rest = strings.TrimSpace(rest)
	return ok && (rest == "" || strings.HasPrefix(rest, "#"))
}
