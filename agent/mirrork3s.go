package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"

	"gopkg.in/yaml.v3"
)

// k3sAddMirror puts url first in mirrors."<registry>".endpoint of a k3s
// registries.yaml (empty content: a new file), keeping every other entry.
// The document is re-encoded; leave restores the bytes from before.
func k3sAddMirror(content []byte, registry, url string) ([]byte, error) {
	top, err := parseRegistriesYAML(content)
	if err != nil {
		return nil, err
	}
	if top == nil {
		top = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	mirrors, err := childMap(top, "mirrors", true)
	if err != nil {
		return nil, err
	}
	reg, err := childMap(mirrors, registry, true)
	if err != nil {
		return nil, err
	}
	_, ep := yamlLookup(reg, "endpoint")
	if ep == nil || (ep.Kind == yaml.ScalarNode && ep.Tag == "!!null") {
		ep = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		yamlSet(reg, "endpoint", ep)
	}
	if ep.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("editing registries.yaml: mirrors.%q.endpoint is not a list", registry)
	}
	if slices.ContainsFunc(ep.Content, func(n *yaml.Node) bool { return n.Value == url }) {
		return content, nil
	}
	ep.Content = append([]*yaml.Node{{Kind: yaml.ScalarNode, Tag: "!!str", Value: url}}, ep.Content...)
	return encodeRegistriesYAML(top)
}

// k3sRemoveMirror takes url out of mirrors."<registry>".endpoint, and the
// mappings it leaves empty.
func k3sRemoveMirror(content []byte, registry, url string) (out []byte, changed bool, err error) {
	top, err := parseRegistriesYAML(content)
	if err != nil || top == nil {
		return content, false, err
	}
	mirrors, err := childMap(top, "mirrors", false)
	if err != nil || mirrors == nil {
		return content, false, err
	}
	reg, err := childMap(mirrors, registry, false)
	if err != nil || reg == nil {
		return content, false, err
	}
	_, ep := yamlLookup(reg, "endpoint")
	if ep == nil || ep.Kind != yaml.SequenceNode {
		return content, false, nil
	}
	n := len(ep.Content)
	ep.Content = slices.DeleteFunc(ep.Content, func(n *yaml.Node) bool { return n.Value == url })
	if len(ep.Content) == n {
		return content, false, nil
	}
	if len(ep.Content) == 0 {
		yamlDelete(reg, "endpoint")
	}
	if len(reg.Content) == 0 {
		yamlDelete(mirrors, registry)
	}
	if len(mirrors.Content) == 0 {
		yamlDelete(top, "mirrors")
	}
	if len(top.Content) == 0 {
		return nil, true, nil
	}
	out, err = encodeRegistriesYAML(top)
	return out, true, err
}

// k3sHasMirror reports whether registries.yaml lists url for registry.
func k3sHasMirror(content []byte, registry, url string) bool {
	top, err := parseRegistriesYAML(content)
	if err != nil || top == nil {
		return false
	}
	mirrors, _ := childMap(top, "mirrors", false)
	if mirrors == nil {
		return false
	}
	reg, _ := childMap(mirrors, registry, false)
	if reg == nil {
		return false
	}
	_, ep := yamlLookup(reg, "endpoint")
	return ep != nil && slices.ContainsFunc(ep.Content, func(n *yaml.Node) bool { return n.Value == url })
}

func parseRegistriesYAML(content []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(content))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("parsing registries.yaml: %w", err)
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parsing registries.yaml: more than one YAML document")
	}
	var v any
	if err := doc.Decode(&v); err != nil { // duplicate keys and the like
		return nil, fmt.Errorf("parsing registries.yaml: %w", err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Tag == "!!null" {
		return nil, nil
	}
	if doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("parsing registries.yaml: the top level is not a mapping")
	}
	return doc.Content[0], nil
}

func encodeRegistriesYAML(top *yaml.Node) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{top}}); err != nil {
		return nil, fmt.Errorf("encoding registries.yaml: %w", err)
	}
	return b.Bytes(), nil
}

func yamlLookup(m *yaml.Node, key string) (k, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}

func yamlSet(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, v)
}

func yamlDelete(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = slices.Delete(m.Content, i, i+2)
			return
		}
	}
}

// childMap is the mapping under key (made when create and absent or null).
func childMap(m *yaml.Node, key string, create bool) (*yaml.Node, error) {
	_, v := yamlLookup(m, key)
	if v == nil || (v.Kind == yaml.ScalarNode && v.Tag == "!!null") {
		if !create {
			return nil, nil
		}
		v = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		yamlSet(m, key, v)
	}
	if v.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("editing registries.yaml: %q is not a mapping", key)
	}
	return v, nil
}
