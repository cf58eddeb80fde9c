package config

import (
	"fmt"

	yaml "go.yaml.in/yaml/v3"
)

// expandMerges replaces the merge keys ("<<: *anchor", YAML 1.1's, which
// Kubernetes' YAML reader also takes) of every mapping under n with the
// pairs they merge in, so that the readers of a document never see them.
// As the YAML merge key specification says, a key of the mapping itself
// wins over a merged one, and of the mappings one merge key names in a
// list, the earlier wins. Merged pairs keep their nodes, and so the lines
// of the mapping they came from, where an error in them is reported. It
// returns the line of the first merge key whose value is not a mapping or
// a list of mappings, and why.
func expandMerges(n *yaml.Node) (int, error) {
	e := merger{done: map[*yaml.Node]bool{}}
	e.walk(n)
	return e.line, e.err
}

type merger struct {
	done map[*yaml.Node]bool // expanded, or being expanded (an alias cycle)
	line int
	err  error
}

// walk expands the mappings under n, those an alias names first, so that
// a mapping merges mappings already expanded.
func (e *merger) walk(n *yaml.Node) {
	if n == nil || e.done[n] || e.err != nil {
		return
	}
	e.done[n] = true
	e.walk(n.Alias)
	for _, c := range n.Content {
		e.walk(c)
	}
	if n.Kind == yaml.MappingNode {
		e.expand(n)
	}
}

func (e *merger) expand(n *yaml.Node) {
	var own, sources []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag != "!!merge" {
			own = append(own, k, v)
			continue
		}
		switch v = resolveAlias(v); v.Kind {
		case yaml.MappingNode:
			sources = append(sources, v)
		case yaml.SequenceNode:
			for _, item := range v.Content {
				if item = resolveAlias(item); item.Kind != yaml.MappingNode {
					e.fail(k.Line, item)
					return
				}
				sources = append(sources, item)
			}
		default:
			e.fail(k.Line, v)
			return
		}
	}
	if len(own) == len(n.Content) {
		return // no merge key
	}
	have := map[string]bool{}
	for i := 0; i < len(own); i += 2 {
		have[own[i].Value] = true
	}
	for _, src := range sources {
		for i := 0; i+1 < len(src.Content); i += 2 {
			if k := src.Content[i]; !have[k.Value] {
				have[k.Value] = true
				own = append(own, k, src.Content[i+1])
			}
		}
	}
	n.Content = own
}

func (e *merger) fail(line int, v *yaml.Node) {
	e.line, e.err = line, fmt.Errorf("a merge key (<<) takes a mapping or a list of mappings, not %s; merge an anchored mapping (<<: *name) or write the fields out", describe(v))
}
