package config

import (
	"bytes"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/model"
)

// istioAPIVersions are the apiVersions of Istio's networking kinds; Weft
// treats them as the same schema.
var istioAPIVersions = []string{"networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"}

// istioKinds makes a new empty spec for each Istio kind Weft reads.
var istioKinds = map[string]func() proto.Message{
	KindServiceEntry:    func() proto.Message { return &networking.ServiceEntry{} },
	KindWorkloadEntry:   func() proto.Message { return &networking.WorkloadEntry{} },
	KindVirtualService:  func() proto.Message { return &networking.VirtualService{} },
	KindDestinationRule: func() proto.Message { return &networking.DestinationRule{} },
	KindSidecar:         func() proto.Message { return &networking.Sidecar{} },
	KindGateway:         func() proto.Message { return &networking.Gateway{} },
}

// unsupportedKinds are Istio kinds Weft knows of and does not read yet.
// They are reported as errors, never ignored.
var unsupportedKinds = map[string]bool{
	"EnvoyFilter":   true,
	"WorkloadGroup": true,
	"WasmPlugin":    true,
}

// ignoredMetadata are Kubernetes ObjectMeta fields that appear in YAML
// exported from a cluster and mean nothing to Weft; they are accepted and
// ignored. Any other metadata field is an error.
var ignoredMetadata = map[string]bool{
	"uid": true, "resourceVersion": true, "generation": true, "creationTimestamp": true,
	"deletionTimestamp": true, "deletionGracePeriodSeconds": true, "managedFields": true,
	"ownerReferences": true, "finalizers": true, "generateName": true, "selfLink": true,
}

// maxNodes bounds the YAML nodes visited per document, aliases expanded,
// so that a small file of nested aliases cannot exhaust memory.
const maxNodes = 1 << 20

// parseInto splits data into documents and adds each one to set.
func parseInto(set *Set, file string, data []byte) {
	for _, d := range parseDocuments(file, data) {
		set.add(d.r, d.fs)
	}
}

// parsedDoc is one document as parsed, before Set.add (which marks a
// resource defined twice).
type parsedDoc struct {
	r  *Resource
	fs []model.Finding
}

// parseDocuments splits data into documents and parses each one.
func parseDocuments(file string, data []byte) []parsedDoc {
	var out []parsedDoc
	for _, doc := range splitDocuments(data) {
		r, fs := parseDocument(file, doc.text, doc.offset)
		out = append(out, parsedDoc{r: r, fs: fs})
	}
	return out
}

type document struct {
	text   []byte
	offset int // lines before the document's first line
}

// splitDocuments cuts a stream at its document markers ("---" and "..." at
// the start of a line), so a syntax error in one document does not lose
// the others. Marker lines are blanked rather than dropped (keeping any
// content after "---"), so node lines plus offset are file lines.
func splitDocuments(data []byte) []document {
	var docs []document
	var cur []byte
	start := 0
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i, line := range lines {
		trimmed := bytes.TrimRight(line, "\r\n")
		isStart := bytes.HasPrefix(trimmed, []byte("---")) && (len(trimmed) == 3 || trimmed[3] == ' ' || trimmed[3] == '\t')
		isEnd := bytes.HasPrefix(trimmed, []byte("...")) && (len(trimmed) == 3 || trimmed[3] == ' ' || trimmed[3] == '\t')
		if isStart {
			docs = append(docs, document{text: cur, offset: start})
			cur = nil
			start = i
			line = append([]byte("   "), line[3:]...)
		} else if isEnd {
			line = []byte("\n")
		}
		cur = append(cur, line...)
	}
	docs = append(docs, document{text: cur, offset: start})
	return docs
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

// parseYAML parses one document into a node tree with file line numbers.
// It returns nil and no error for an empty document.
func parseYAML(text []byte, offset int) (root *yaml.Node, line int, err error) {
	defer func() {
		// The YAML library is outside input's first reader: a panic there
		// must not take down the control plane.
		if p := recover(); p != nil {
			root, line, err = nil, offset+1, fmt.Errorf("the YAML parser failed on this document: %v", p)
		}
	}()
	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil {
		line, msg := yamlErrorLine(text, err)
		return nil, offset + line, fmt.Errorf("invalid YAML: %s", msg)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, 0, nil
	}
	shiftLines(&doc, offset)
	if line, err := expandMerges(doc.Content[0]); err != nil {
		return nil, line, err
	}
	return doc.Content[0], 0, nil
}

// yamlErrorLine returns the 1-based line of text that err, an error from
// parsing text, is about, and err's message without yaml.v3's "line N: ".
//
// yaml.v3's own line cannot be used as it is: parser errors give a 0-based
// line and scanner errors a 1-based one, and either names the line where
// the enclosing construct starts (the block mapping around a key indented
// wrongly, the plain scalar before a tab) unless that is the document's
// first line, and then the line of the problem. So the line is found by
// parsing prefixes of text: the first line by which the document already
// fails with the same message is the line of the offending text (an
// unclosed '{', '[' or quote, a misindented key, a tab, an alias of an
// unknown anchor, a control character). The search starts where the
// construct starts, read from text parsed after one added line (so that
// it never starts on the first line and yaml.v3 names its line), so a
// multi-line construct closed earlier in the document cannot match.
func yamlErrorLine(text []byte, err error) (int, string) {
	msg, _ := splitYAMLError(err)
	lines := bytes.SplitAfter(text, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	if len(lines) == 0 {
		return 1, msg
	}
	shifted := append([]byte("\n"), text...)
	if bom := []byte("\xef\xbb\xbf"); bytes.HasPrefix(text, bom) {
		shifted = slices.Concat(bom, []byte("\n"), text[len(bom):])
	}
	from := 1
	if m, n := splitYAMLError(unmarshalErr(shifted)); m == msg && n > 1 {
		// The added line makes n the construct's 1-based line for a
		// parser error and one more for a scanner error.
		from = min(n-1, len(lines))
	}
	fails := func(k int) bool {
		m, _ := splitYAMLError(unmarshalErr(bytes.Join(lines[:k], nil)))
		return m == msg
	}
	// Gallop from the construct's line, then bisect: the prefixes that
	// fail this way are those that reach the offending line.
	lo, hi := from-1, from
	for step := 1; hi < len(lines) && !fails(hi); step *= 2 {
		lo, hi = hi, min(hi+step, len(lines))
	}
	for lo+1 < hi {
		mid := lo + (hi-lo)/2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi, msg
}

// splitYAMLError returns a yaml.v3 error's message without its "yaml: "
// and "line N: " parts, and N (0 if absent or err is nil).
func splitYAMLError(err error) (string, int) {
	if err == nil {
		return "", 0
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	n := 0
	if m := yamlLineRE.FindStringSubmatchIndex(msg); m != nil {
		n, _ = strconv.Atoi(msg[m[2]:m[3]])
		msg = strings.TrimPrefix(msg[:m[0]]+msg[m[1]:], ": ")
	}
	return msg, n
}

// unmarshalErr parses text and returns the error, a panic included.
func unmarshalErr(text []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	var doc yaml.Node
	return yaml.Unmarshal(text, &doc)
}

func shiftLines(n *yaml.Node, offset int) {
	n.Line += offset
	for _, c := range n.Content {
		shiftLines(c, offset)
	}
}

// parseDocument checks one document. It returns nil for a document with
// no identity (empty, bad YAML, no kind or name); its findings are then
// about the file.
func parseDocument(file string, text []byte, offset int) (*Resource, []model.Finding) {
	root, line, err := parseYAML(text, offset)
	if err != nil {
		return nil, []model.Finding{fileFinding(file, line, err.Error())}
	}
	if root == nil || (root.Kind == yaml.ScalarNode && root.Tag == "!!null") {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, []model.Finding{fileFinding(file, root.Line, "a document must be a mapping with apiVersion, kind, metadata and spec")}
	}
	r := &Resource{
		Meta:  model.Meta{File: file, Line: root.Line, Namespace: model.DefaultNamespace},
		lines: map[string]int{},
	}
	var errs []fieldError
	bad := func(path string, line int, format string, args ...any) {
		errs = append(errs, fieldError{path: path, line: line, msg: fmt.Sprintf(format, args...)})
	}
	var spec, metadata *yaml.Node
	seen := keySet{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], resolveAlias(root.Content[i+1])
		if first, dup := seen.repeat(k); dup {
			bad(k.Value, k.Line, "%s", duplicateField(k.Value, first))
			continue
		}
		r.lines[k.Value] = k.Line
		switch k.Value {
		case "apiVersion":
			r.APIVersion = scalarString(v)
		case "kind":
			r.Kind = scalarString(v)
		case "metadata":
			metadata = v
		case "spec":
			spec = v
		case "status":
			// Status is computed; YAML exported from a cluster carries it.
		default:
			bad(k.Value, k.Line, "unknown field %q; a document has apiVersion, kind, metadata and spec", k.Value)
		}
	}
	if r.Kind == "" {
		return nil, []model.Finding{{
			Severity: model.SeverityError, Meta: model.Meta{File: file, Line: root.Line}, Line: root.Line,
			Field: "kind", Message: "missing kind; set kind (for example VirtualService) and apiVersion",
		}}
	}
	if metadata != nil {
		parseMetadata(r, metadata, bad)
	}
	if r.Name == "" {
		line := r.Line
		if metadata != nil {
			line = metadata.Line
		}
		out := []model.Finding{{
			Severity: model.SeverityError, Meta: model.Meta{File: file, Line: root.Line}, Line: line,
			Field: "metadata.name", Message: fmt.Sprintf("%s has no metadata.name; every resource needs a name", r.Kind),
		}}
		for _, e := range errs {
			out = append(out, model.Finding{Severity: model.SeverityError, Meta: model.Meta{File: file, Line: root.Line}, Line: e.line, Field: e.path, Message: e.msg})
		}
		return nil, out
	}
	findings := func() []model.Finding {
		out := make([]model.Finding, 0, len(errs))
		for _, e := range errs {
			out = append(out, model.Finding{Severity: model.SeverityError, Meta: r.Meta, Line: e.line, Field: e.path, Message: e.msg})
		}
		if len(out) > 0 {
			r.Invalid = true
			r.Spec = nil
		}
		return out
	}

	if msg := checkKind(r.Kind, r.APIVersion); msg != "" {
		field := "kind"
		if !unsupportedKinds[r.Kind] && (r.Kind == KindWorkload || istioKinds[r.Kind] != nil) {
			field = "apiVersion"
		}
		bad(field, r.lines[field], "%s", msg)
		return r, findings()
	}
	if spec == nil {
		bad("spec", r.Line, "missing spec")
		return r, findings()
	}
	if r.Kind == KindWorkload {
		w, es := decodeWorkload(spec, r)
		errs = append(errs, es...)
		r.Spec = w
	} else {
		msg := istioKinds[r.Kind]()
		es := decodeProto(spec, msg, r)
		errs = append(errs, es...)
		r.Spec = msg
	}
	return r, findings()
}

// checkKind returns why kind/apiVersion cannot be read, or "".
func checkKind(kind, apiVersion string) string {
	switch {
	case unsupportedKinds[kind]:
		return fmt.Sprintf("kind %s (%s) is not supported by Weft yet; remove it or keep it out of Weft's config folder", kind, apiVersion)
	case kind == KindWorkload:
		if apiVersion != WeftAPIVersion {
			return fmt.Sprintf("kind Workload needs apiVersion %s, not %q", WeftAPIVersion, apiVersion)
		}
	case istioKinds[kind] != nil:
		versions := istioAPIVersions
		if v, ok := kindAPIVersions[kind]; ok {
			versions = v
		}
		if apiVersion == "" {
			return fmt.Sprintf("apiVersion is missing; use %s", versions[0])
		}
		for _, v := range versions {
			if apiVersion == v {
				return ""
			}
		}
		return fmt.Sprintf("apiVersion %q is not one Weft reads for %s; use %s", apiVersion, kind, strings.Join(versions, ", "))
	default:
		return fmt.Sprintf("unknown kind %q (apiVersion %q); Weft reads %s (Istio's) and Workload (%s)", kind, apiVersion, strings.Join(slices.Sorted(maps.Keys(istioKinds)), ", "), WeftAPIVersion)
	}
	return ""
}

func parseMetadata(r *Resource, n *yaml.Node, bad func(string, int, string, ...any)) {
	r.lines["metadata"] = n.Line
	if n.Kind != yaml.MappingNode {
		bad("metadata", n.Line, "metadata must be a mapping with name and namespace")
		return
	}
	seen := keySet{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		path := "metadata." + k.Value
		if first, dup := seen.repeat(k); dup {
			bad(path, k.Line, "%s", duplicateField(k.Value, first))
			continue
		}
		r.lines[path] = k.Line
		switch k.Value {
		case "name":
			r.Name = scalarString(v)
			if r.Name != "" && !isDNSSubdomain(r.Name) {
				bad(path, k.Line, "%q is not a valid name; use lowercase letters, digits, '-' and '.'", r.Name)
			}
		case "namespace":
			if ns := scalarString(v); ns != "" {
				r.Namespace = ns
				if !isDNSLabel(ns) {
					bad(path, k.Line, "%q is not a valid namespace; use lowercase letters, digits and '-'", ns)
				}
			}
		case "labels", "annotations":
			m, ok := stringMap(v, path, r.lines, bad)
			if !ok {
				bad(path, k.Line, "%s must be a mapping of strings to strings", k.Value)
			}
			if k.Value == "labels" {
				r.Labels = m
			} else {
				r.Annotations = m
			}
		default:
			if !ignoredMetadata[k.Value] {
				bad(path, k.Line, "unknown field %q", k.Value)
			}
		}
	}
}

// stringMap reads a mapping of strings to strings, reporting a key
// written twice through bad. It returns false if n is not such a mapping.
func stringMap(n *yaml.Node, path string, lines map[string]int, bad func(string, int, string, ...any)) (map[string]string, bool) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, true
	}
	if n.Kind != yaml.MappingNode {
		return nil, false
	}
	m := make(map[string]string, len(n.Content)/2)
	seen := keySet{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		if v.Kind != yaml.ScalarNode {
			return m, false
		}
		if first, dup := seen.repeat(k); dup {
			bad(keyPath(path, k.Value), k.Line, "%s", duplicateKey(k.Value, first))
			continue
		}
		m[k.Value] = v.Value
		lines[keyPath(path, k.Value)] = k.Line
	}
	return m, true
}

// keySet finds the keys written twice in one YAML mapping. YAML forbids
// them, but yaml.v3's node tree keeps both and a decoder silently takes
// one, so every reader of a mapping checks its keys with a keySet.
type keySet map[string]int

// repeat records key k and, if a key of the same name came before it,
// returns that key's line and true.
func (s keySet) repeat(k *yaml.Node) (first int, dup bool) {
	if k.Kind != yaml.ScalarNode {
		return 0, false
	}
	if l, ok := s[k.Value]; ok {
		return l, true
	}
	s[k.Value] = k.Line
	return 0, false
}

// duplicateField is the message for a field written twice in a mapping,
// found at the second one.
func duplicateField(name string, first int) string {
	return fmt.Sprintf("duplicate field %q (first at line %d); remove one", name, first)
}

// duplicateKey is the message for a map key written twice, found at the
// second one.
func duplicateKey(key string, first int) string {
	return fmt.Sprintf("duplicate key %q (first at line %d); remove one", key, first)
}

func scalarString(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return ""
	}
	return n.Value
}

// resolveAlias follows an alias to the node it names.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

var (
	dnsLabelRE     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dnsSubdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

func isDNSLabel(s string) bool     { return len(s) <= 63 && dnsLabelRE.MatchString(s) }
func isDNSSubdomain(s string) bool { return len(s) <= 253 && dnsSubdomainRE.MatchString(s) }

// fieldError is a problem at a field path and line, before it becomes a
// Finding with the resource's Meta.
type fieldError struct {
	path string
	line int
	msg  string
}
