package config

import (
	"fmt"

	yaml "go.yaml.in/yaml/v3"
)

// expandMerges replaces the merge keys ("<<: *anchor", YAML 1.1's) of
// every mapping under n with the pairs they merge in, so that the readers
// of a document never see them. As the YAML merge key specification
// says, a key of the mapping itself wins over a merged one, and of the
// mappings one merge key names in a list, the earlier wins. Merged pairs
// keep their nodes, and so the lines of the mapping they came from, where
// an error in them is reported. The pairs merged in count against
// maxNodes, as the nodes readers visit do, so that a small document of
// merged aliases cannot take the memory or the time of a large one. It
// returns the line of the first merge it cannot make, and why: a merge of
// something other than a mapping or a list of mappings, a mapping that
// merges itself, two merge keys in one mapping, a key twice in a merged
// mapping.
func expandMerges(n *yaml.Node) (int, error) {
	e := merger{state: map[*yaml.Node]int{}, budget: maxNodes}
	e.walk(n)
	return e.line, e.err
}

// States of a node in merger.state.
const (
	expanding = 1 // under walk: a merge of it would merge itself
	expanded  = 2
)

type merger struct {
	state  map[*yaml.Node]int
	budget int // merged pairs left
	line   int
	err    error
}

// walk expands the mappings under n, those an alias names first, so that
// a mapping merges mappings already expanded.
func (e *merger) walk(n *yaml.Node) {
	if n == nil || e.state[n] != 0 || e.err != nil {
		return
	}
	e.state[n] = expanding
	e.walk(n.Alias)
	for _, c := range n.Content {
		e.walk(c)
	}
	if n.Kind == yaml.MappingNode && e.err == nil {
		e.expand(n)
	}
	e.state[n] = expanded
}

func isMergeKey(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Tag == "!!merge" && k.Value == "<<"
}

func (e *merger) expand(n *yaml.Node) {
	var own, sources []*yaml.Node
	var merge *yaml.Node // the merge key
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !isMergeKey(k) {
			own = append(own, k, v)
			continue
		}
		if merge != nil {
			e.failf(k.Line, "%s", duplicateKey("<<", merge.Line))
			return
		}
		merge = k
		items := []*yaml.Node{v}
		if r := resolveAlias(v); r.Kind == yaml.SequenceNode {
			items = r.Content
		}
		for _, item := range items {
			src := resolveAlias(item)
			switch {
			case src.Kind != yaml.MappingNode:
				e.failf(item.Line, "a merge key (<<) takes a mapping or a list of mappings, not %s; merge an anchored mapping (<<: *name) or write the fields out", describeValue(src))
				return
			case e.state[src] == expanding:
				e.failf(item.Line, "a merge key (<<) cannot merge a mapping that holds it")
				return
			}
			sources = append(sources, src)
		}
	}
	if merge == nil {
		return
	}
	have := map[string]bool{}
	for i := 0; i < len(own); i += 2 {
		have[own[i].Value] = true
	}
	for _, src := range sources {
		if e.budget -= len(src.Content) / 2; e.budget < 0 {
			e.failf(merge.Line, "document too large (merge keys expand to more than %d entries)", maxNodes)
			return
		}
		seen := keySet{}
		for i := 0; i+1 < len(src.Content); i += 2 {
			k := src.Content[i]
			if first, dup := seen.repeat(k); dup {
				e.failf(k.Line, "%s", duplicateKey(k.Value, first))
				return
			}
			if !have[k.Value] {
				have[k.Value] = true
				own = append(own, k, src.Content[i+1])
			}
		}
	}
	n.Content = own
}

func (e *merger) failf(line int, format string, args ...any) {
	e.line, e.err = line, fmt.Errorf(format, args...)
}

// describeValue is describe, saying "nothing" for an empty value.
func describeValue(n *yaml.Node) string {
	if isNull(n) {
		return "nothing"
	}
	return describe(n)
}
