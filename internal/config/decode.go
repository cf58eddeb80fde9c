package config

import (
	"bytes"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// decodeProto decodes a spec node into msg. It walks the YAML against the
// message descriptor, which finds every unknown field and bad enum value
// with its line at once and records the line of every field in r; the
// walk writes JSON guided by the field types, which protojson (unknown
// fields not discarded) then decodes. An error protojson still finds is
// placed on the field whose JSON it was reading.
func decodeProto(spec *yaml.Node, msg proto.Message, r *Resource) []fieldError {
	c := &converter{lines: r.lines, budget: maxNodes}
	c.lines["spec"] = spec.Line
	c.message(spec, msg.ProtoReflect().Descriptor(), "spec")
	if len(c.errs) > 0 {
		return c.errs
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(c.buf.Bytes(), msg); err != nil {
		return []fieldError{c.locate(err)}
	}
	return nil
}

type offset struct {
	pos  int
	line int
	path string
}

type converter struct {
	buf     bytes.Buffer
	lines   map[string]int
	offsets []offset
	errs    []fieldError
	budget  int
}

func (c *converter) fail(path string, line int, format string, args ...any) {
	c.errs = append(c.errs, fieldError{path: path, line: line, msg: fmt.Sprintf(format, args...)})
}

// node follows aliases and charges the node budget. It returns nil when
// the budget is spent (the error is recorded once).
func (c *converter) node(n *yaml.Node, path string) *yaml.Node {
	n = resolveAlias(n)
	c.budget--
	if c.budget == 0 {
		c.fail(path, n.Line, "document too large (more than %d YAML nodes with aliases expanded)", maxNodes)
	}
	if c.budget <= 0 {
		return nil
	}
	c.offsets = append(c.offsets, offset{pos: c.buf.Len(), line: n.Line, path: path})
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

func (c *converter) message(n *yaml.Node, md protoreflect.MessageDescriptor, path string) {
	if n = c.node(n, path); n == nil {
		return
	}
	if md.FullName() == "google.protobuf.Duration" && n.Kind == yaml.ScalarNode {
		if d, ok := goDuration(n.Value); ok {
			writeString(&c.buf, d)
			return
		}
	}
	if strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		c.generic(n, path) // well-known types have their own JSON forms
		return
	}
	if isNull(n) {
		c.buf.WriteString("null")
		return
	}
	if n.Kind != yaml.MappingNode {
		c.fail(path, n.Line, "expected a mapping, got %s", describe(n))
		return
	}
	c.buf.WriteByte('{')
	first := true
	seen := map[protoreflect.FieldNumber]int{} // the line of each field, by number: "loadBalancer" and "load_balancer" are one field
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		fd := md.Fields().ByJSONName(k.Value)
		if fd == nil {
			fd = md.Fields().ByName(protoreflect.Name(k.Value))
		}
		if fd == nil {
			c.fail(fieldPath(path, k.Value), k.Line, "unknown field %q%s", k.Value, suggest(k.Value, md))
			continue
		}
		p := fieldPath(path, fd.JSONName())
		if l, dup := seen[fd.Number()]; dup {
			c.fail(p, k.Line, "%s", duplicateField(k.Value, l))
			continue
		}
		seen[fd.Number()] = k.Line
		c.lines[p] = k.Line
		if !first {
			c.buf.WriteByte(',')
		}
		first = false
		writeString(&c.buf, fd.JSONName())
		c.buf.WriteByte(':')
		c.field(v, fd, p)
	}
	c.buf.WriteByte('}')
}

func (c *converter) field(v *yaml.Node, fd protoreflect.FieldDescriptor, path string) {
	switch {
	case fd.IsList():
		if v = c.node(v, path); v == nil {
			return
		}
		if isNull(v) {
			c.buf.WriteString("null")
			return
		}
		if v.Kind != yaml.SequenceNode {
			c.fail(path, v.Line, "expected a list, got %s", describe(v))
			return
		}
		c.buf.WriteByte('[')
		for i, item := range v.Content {
			if i > 0 {
				c.buf.WriteByte(',')
			}
			ip := indexPath(path, i)
			c.lines[ip] = item.Line
			c.singular(item, fd, ip)
		}
		c.buf.WriteByte(']')
	case fd.IsMap():
		if v = c.node(v, path); v == nil {
			return
		}
		if isNull(v) {
			c.buf.WriteString("null")
			return
		}
		if v.Kind != yaml.MappingNode {
			c.fail(path, v.Line, "expected a mapping, got %s", describe(v))
			return
		}
		c.buf.WriteByte('{')
		seen := keySet{}
		for i := 0; i+1 < len(v.Content); i += 2 {
			k := v.Content[i]
			kp := keyPath(path, k.Value)
			if first, dup := seen.repeat(k); dup {
				c.fail(kp, k.Line, "%s", duplicateKey(k.Value, first))
				continue
			}
			if i > 0 {
				c.buf.WriteByte(',')
			}
			c.lines[kp] = k.Line
			writeString(&c.buf, k.Value)
			c.buf.WriteByte(':')
			c.singular(v.Content[i+1], fd.MapValue(), kp)
		}
		c.buf.WriteByte('}')
	default:
		c.singular(v, fd, path)
	}
}

// singular writes one value of fd's type (an element, for lists).
func (c *converter) singular(n *yaml.Node, fd protoreflect.FieldDescriptor, path string) {
	if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
		c.message(n, fd.Message(), path)
		return
	}
	if n = c.node(n, path); n == nil {
		return
	}
	if isNull(n) {
		c.buf.WriteString("null")
		return
	}
	if n.Kind != yaml.ScalarNode {
		c.fail(path, n.Line, "expected %s, got %s", kindWord(fd), describe(n))
		return
	}
	switch fd.Kind() {
	case protoreflect.EnumKind:
		ed := fd.Enum()
		if n.Tag == "!!int" {
			// A number is read as Istio reads it (protojson), but only if
			// it names a value: protojson would keep any number of an open
			// enum, which no reader of the spec expects.
			i, err := strconv.ParseInt(n.Value, 0, 32)
			if err != nil || ed.Values().ByNumber(protoreflect.EnumNumber(i)) == nil {
				c.fail(path, n.Line, "unknown value %s; use one of %s", n.Value, enumNames(ed))
				return
			}
			c.buf.WriteString(strconv.FormatInt(i, 10))
			return
		}
		if ed.FullName() != "google.protobuf.NullValue" && ed.Values().ByName(protoreflect.Name(n.Value)) == nil {
			c.fail(path, n.Line, "unknown value %q; use one of %s", n.Value, enumNames(ed))
			return
		}
		writeString(&c.buf, n.Value)
	case protoreflect.BoolKind:
		var b bool
		if n.Tag != "!!bool" || n.Decode(&b) != nil {
			c.fail(path, n.Line, "expected true or false, got %q", n.Value)
			return
		}
		c.buf.WriteString(strconv.FormatBool(b))
	case protoreflect.StringKind, protoreflect.BytesKind:
		writeString(&c.buf, n.Value)
	default: // numbers
		switch n.Tag {
		case "!!int", "!!float":
			c.number(n)
		default:
			writeString(&c.buf, n.Value) // protojson accepts quoted numbers and says if it is not one
		}
	}
}

// number writes an !!int or !!float scalar as a JSON number where it can
// (YAML allows 0x1F, 0o17, 1_000, .inf), else as a string protojson will
// judge.
func (c *converter) number(n *yaml.Node) {
	if n.Tag == "!!int" {
		if i, err := strconv.ParseInt(n.Value, 0, 64); err == nil {
			c.buf.WriteString(strconv.FormatInt(i, 10))
			return
		}
		if u, err := strconv.ParseUint(n.Value, 0, 64); err == nil {
			c.buf.WriteString(strconv.FormatUint(u, 10))
			return
		}
	}
	var f float64
	if err := n.Decode(&f); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
		c.buf.WriteString(strconv.FormatFloat(f, 'g', -1, 64))
		return
	}
	writeString(&c.buf, n.Value)
}

var protoSecondsRE = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?s$`)

// goDuration rewrites a duration written as Go and Istio's documentation
// write them ("5m", "1h30m", "250ms") in protobuf's JSON form, seconds
// with an "s" suffix ("300s"). Other values are left to protojson, which
// reads "30s" and "0.5s" itself and reports what it cannot read.
func goDuration(v string) (string, bool) {
	if protoSecondsRE.MatchString(v) {
		return "", false
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return "", false
	}
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	return fmt.Sprintf("%s%d.%09ds", sign, d/time.Second, d%time.Second), true
}

// generic writes any YAML value as JSON by its YAML type, for the
// well-known types (Duration, Struct, wrappers) whose JSON forms protojson
// checks itself.
func (c *converter) generic(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.MappingNode:
		c.buf.WriteByte('{')
		seen := keySet{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := fieldPath(path, k.Value)
			if first, dup := seen.repeat(k); dup {
				c.fail(p, k.Line, "%s", duplicateField(k.Value, first))
				continue
			}
			if i > 0 {
				c.buf.WriteByte(',')
			}
			c.lines[p] = k.Line
			writeString(&c.buf, k.Value)
			c.buf.WriteByte(':')
			if v := c.node(n.Content[i+1], p); v != nil {
				c.generic(v, p)
			}
		}
		c.buf.WriteByte('}')
	case yaml.SequenceNode:
		c.buf.WriteByte('[')
		for i, item := range n.Content {
			if i > 0 {
				c.buf.WriteByte(',')
			}
			p := indexPath(path, i)
			c.lines[p] = item.Line
			if v := c.node(item, p); v != nil {
				c.generic(v, p)
			}
		}
		c.buf.WriteByte(']')
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			c.buf.WriteString("null")
		case "!!bool":
			var b bool
			if n.Decode(&b) == nil {
				c.buf.WriteString(strconv.FormatBool(b))
			} else {
				writeString(&c.buf, n.Value)
			}
		case "!!int", "!!float":
			c.number(n)
		default:
			writeString(&c.buf, n.Value)
		}
	default:
		c.buf.WriteString("null")
	}
}

var protojsonPosRE = regexp.MustCompile(`\(line (\d+):(\d+)\)`)

// locate turns a protojson error into a fieldError on the field whose
// JSON it was reading. The JSON written is one line of ASCII, so the
// column protojson reports is a byte offset plus one.
func (c *converter) locate(err error) fieldError {
	msg := err.Error()
	out := fieldError{path: "spec", line: c.lines["spec"]}
	if m := protojsonPosRE.FindStringSubmatchIndex(msg); m != nil {
		col, _ := strconv.Atoi(msg[m[4]:m[5]])
		pos := col - 1
		i := sort.Search(len(c.offsets), func(i int) bool { return c.offsets[i].pos > pos }) - 1
		if i >= 0 {
			out.path, out.line = c.offsets[i].path, c.offsets[i].line
		}
		msg = strings.TrimLeft(msg[m[1]:], ": ")
	} else if i := strings.Index(msg, ":"); i >= 0 && strings.HasPrefix(msg, "proto") {
		msg = strings.TrimSpace(msg[i+1:])
	}
	if strings.Contains(msg, "google.protobuf.Duration") {
		msg += ": write a duration such as \"30s\", \"0.5s\", \"250ms\" or \"5m\""
	}
	out.msg = msg
	return out
}

func kindWord(fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		return "one of " + enumNames(fd.Enum())
	case protoreflect.BoolKind:
		return "true or false"
	case protoreflect.StringKind, protoreflect.BytesKind:
		return "a string"
	}
	return "a number"
}

func enumNames(ed protoreflect.EnumDescriptor) string {
	vs := ed.Values()
	names := make([]string, 0, vs.Len())
	for i := 0; i < vs.Len(); i++ {
		names = append(names, string(vs.Get(i).Name()))
	}
	return strings.Join(names, ", ")
}

// suggest returns ` (did you mean "x"?)` for the field name closest to an
// unknown one, or "" if none is close.
func suggest(name string, md protoreflect.MessageDescriptor) string {
	var names []string
	fs := md.Fields()
	for i := 0; i < fs.Len(); i++ {
		names = append(names, fs.Get(i).JSONName())
	}
	return suggestFrom(name, names)
}

func suggestFrom(name string, names []string) string {
	best := Closest(name, names)
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

// Closest returns the one of names nearest to name (case aside) when it
// is within two edits, for "did you mean" hints; "" when none is.
func Closest(name string, names []string) string {
	if len(name) > 64 {
		return ""
	}
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(strings.ToLower(name), strings.ToLower(n)); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 100
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// writeString writes s as a JSON string of ASCII only, so byte offsets
// and protojson's rune columns agree.
func writeString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteByte(byte(r))
		case r < 0x20 || r == 0x7f:
			b.WriteString(`\u00`)
			b.WriteByte(hex[r>>4])
			b.WriteByte(hex[r&0xf])
		case r < 0x80:
			b.WriteByte(byte(r))
		default:
			if r == utf8.RuneError {
				r = 0xfffd
			}
			if r > 0xffff {
				r -= 0x10000
				fmt.Fprintf(b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
			} else {
				fmt.Fprintf(b, `\u%04x`, r)
			}
		}
	}
	b.WriteByte('"')
}
