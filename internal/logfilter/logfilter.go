// Package logfilter turns a Telemetry access log filter, a CEL expression
// over Envoy's request attributes (`response.code >= 400`), into Envoy's
// own access log filters: status code, duration, header, response flag
// and gRPC status filters joined by and/or. Weft's sidecar evaluates
// those without a CEL interpreter, and a stock Envoy gets filters it has
// built in.
//
// The expressions Istio's users write are comparisons of one attribute
// with a literal, joined by &&, || and !. Compile accepts exactly what it
// can translate faithfully and refuses the rest, naming the part of the
// expression it cannot translate and what it can.
package logfilter

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/parser"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"golang.org/x/net/http/httpguts"
)

// attributes lists the attributes Compile translates, for errors.
const attributes = "response.code, request.duration, response.grpc_status, response.flags, request.headers['name'], " +
	"request.method, request.path, request.url_path, request.host, request.scheme, request.id, request.useragent and request.referer"

// runtimeKey names the runtime value of a status or duration comparison;
// Envoy requires one, Weft's sidecar and an Envoy without such a runtime
// key use the default value.
const runtimeKey = "weft.access_log_filter"

var (
	envOnce sync.Once
	env     *cel.Env
	envErr  error

	cacheMu sync.Mutex
	cache   = map[string]compiled{}
)

type compiled struct {
	f   *accesslogv3.AccessLogFilter
	err error
}

// Compile translates expr. The result is shared: callers must not
// modify it.
func Compile(expr string) (*accesslogv3.AccessLogFilter, error) {
	cacheMu.Lock()
	c, ok := cache[expr]
	cacheMu.Unlock()
	if ok {
		return c.f, c.err
	}
	f, err := compile(expr)
	cacheMu.Lock()
	if len(cache) > 1024 { // expressions come from config: bound the memory anyway
		clear(cache)
	}
	cache[expr] = compiled{f, err}
	cacheMu.Unlock()
	return f, err
}

func compile(expr string) (*accesslogv3.AccessLogFilter, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, errors.New("the expression is empty; remove filter to log every request")
	}
	envOnce.Do(func() { env, envErr = cel.NewEnv() })
	if envErr != nil {
		return nil, envErr
	}
	ast, iss := env.Parse(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("not a CEL expression: %s", strings.TrimSpace(iss.Err().Error()))
	}
	t := &translator{info: ast.NativeRep().SourceInfo()}
	root := ast.NativeRep().Expr()
	if root.Kind() == celast.LiteralKind && root.AsLiteral() == types.True {
		return nil, errors.New("the expression is always true; remove filter to log every request")
	}
	return t.filter(root, false)
}

// translator holds what errors quote the expression from.
type translator struct {
	info *celast.SourceInfo
}

// text is e written out, for errors.
func (t *translator) text(e celast.Expr) string {
	s, err := parser.Unparse(e, t.info)
	if err != nil {
		return "the expression"
	}
	return "`" + s + "`"
}

func (t *translator) unsupported(e celast.Expr, why string) error {
	return fmt.Errorf("%s: %s", t.text(e), why)
}

// filter translates e, or its negation when neg.
func (t *translator) filter(e celast.Expr, neg bool) (*accesslogv3.AccessLogFilter, error) {
	if e.Kind() == celast.SelectKind && e.AsSelect().IsTestOnly() { // has(request.headers.name)
		sel := e.AsSelect()
		if name, ok := attribute(sel.Operand()); ok && name == "request.headers" {
			return headerFilter(&routev3.HeaderMatcher{Name: strings.ToLower(sel.FieldName()), HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}, InvertMatch: neg}), nil
		}
		return nil, t.unsupported(e, "has() is translated for request headers only")
	}
	if e.Kind() != celast.CallKind {
		if _, ok := attribute(e); ok {
			return nil, t.unsupported(e, "not a condition on an attribute Weft can filter access logs on; those are "+attributes)
		}
		return nil, t.unsupported(e, "not a condition")
	}
	call := e.AsCall()
	args := call.Args()
	switch fn := call.FunctionName(); fn {
	case operators.LogicalNot:
		return t.filter(args[0], !neg)
	case operators.LogicalAnd, operators.LogicalOr:
		and := fn == operators.LogicalAnd
		if neg { // De Morgan
			and = !and
		}
		var parts []*accesslogv3.AccessLogFilter
		for _, a := range args {
			f, err := t.filter(a, neg)
			if err != nil {
				return nil, err
			}
			parts = append(parts, f)
		}
		return join(and, parts), nil
	case operators.Equals, operators.NotEquals, operators.Less, operators.LessEquals, operators.Greater, operators.GreaterEquals:
		return t.comparison(e, fn, args[0], args[1], neg)
	case operators.In:
		if args[1].Kind() == celast.ListKind { // x in [a, b]: x == a || x == b
			elems := args[1].AsList().Elements()
			if len(elems) == 0 {
				return nil, t.unsupported(e, "the list is empty")
			}
			parts := make([]*accesslogv3.AccessLogFilter, 0, len(elems))
			for _, el := range elems {
				f, err := t.comparison(e, operators.Equals, args[0], el, neg)
				if err != nil {
					return nil, err
				}
				parts = append(parts, f)
			}
			return join(neg, parts), nil
		}
		name, ok := t.headerName(args[1], args[0])
		if !ok {
			return nil, t.unsupported(e, "`in` is translated for a list of literals and for 'name' in request.headers")
		}
		return headerFilter(&routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}, InvertMatch: neg}), nil
	case "startsWith", "endsWith", "contains", "matches":
		if !call.IsMemberFunction() || len(args) != 1 {
			return nil, t.unsupported(e, fn+" is translated as a method of a request attribute")
		}
		s, ok := stringLiteral(args[0])
		if !ok {
			return nil, t.unsupported(e, fn+" needs a string literal")
		}
		return t.stringTest(e, call.Target(), fn, s, neg)
	}
	name := call.FunctionName()
	if op, ok := operators.FindReverse(name); ok && op != "" {
		name = op
	} else {
		name = strings.ReplaceAll(strings.Trim(name, "_@"), "_", "") // "_?_:_" is ?:
	}
	return nil, t.unsupported(e, fmt.Sprintf("%s is not translated; access log filters are comparisons of request and response attributes joined by &&, || and !", name))
}

// comparison translates `attr op literal` (either way round).
func (t *translator) comparison(e celast.Expr, op string, l, r celast.Expr, neg bool) (*accesslogv3.AccessLogFilter, error) {
	attr, lit := l, r
	if l.Kind() == celast.LiteralKind || l.Kind() == celast.CallKind && l.AsCall().FunctionName() == "duration" {
		attr, lit, op = r, l, flip(op)
	}
	name, ok := attribute(attr)
	if !ok {
		if h, hok := t.headerIndex(attr); hok {
			return t.headerCompare(e, h, op, lit, neg)
		}
		if indexesHeaders(attr) {
			return nil, t.unsupported(attr, badHeaderName)
		}
		return nil, t.unsupported(e, "compares no request or response attribute")
	}
	if h, ok := headerAttrs[name]; ok {
		return t.headerCompare(e, h, op, lit, neg)
	}
	if neg {
		op = negate(op)
	}
	switch name {
	case "response.code":
		n, ok := intLiteral(lit)
		if !ok {
			return nil, t.unsupported(e, "response.code is compared with an integer")
		}
		f, err := numeric(op, n, statusCmp, 0, 999)
		if err == nil && holds(0, op, n) {
			// Without a response (a TCP connection, a client gone) CEL
			// has no response.code, Envoy's status_code_filter sees 0.
			f = join(true, []*accesslogv3.AccessLogFilter{responded(), f})
		}
		return f, err
	case "request.duration":
		d, ok := durationLiteral(lit)
		if !ok {
			return nil, t.unsupported(e, "request.duration is compared with duration('...'), e.g. duration('1s')")
		}
		if d < 0 || d%time.Millisecond != 0 {
			return nil, t.unsupported(e, "Envoy compares durations in whole milliseconds; use a whole, positive number of them, e.g. duration('250ms')")
		}
		// Envoy's duration filter compares the duration cut down to whole
		// milliseconds, ms: d > X holds for ms >= X (only a request that
		// lasts exactly X, to the nanosecond, is taken as longer) and
		// d <= X for ms <= X-1; >= and < are exact; == and != are not
		// expressible.
		x := d.Milliseconds()
		switch op {
		case operators.Equals, operators.NotEquals:
			return nil, t.unsupported(e, "Envoy compares durations in whole milliseconds, so a duration is compared with <, <=, > or >=")
		case operators.Greater:
			op = operators.GreaterEquals
		case operators.LessEquals:
			op = operators.Less
		}
		return numeric(op, x, func(c *accesslogv3.ComparisonFilter) *accesslogv3.AccessLogFilter {
			return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_DurationFilter{DurationFilter: &accesslogv3.DurationFilter{Comparison: c}}}
		}, 0, math.MaxUint32)
	case "response.grpc_status":
		n, ok := intLiteral(lit)
		if !ok {
			return nil, t.unsupported(e, "response.grpc_status is compared with an integer (0 OK ... 16 UNAUTHENTICATED)")
		}
		var in []accesslogv3.GrpcStatusFilter_Status
		for s := int64(0); s <= 16; s++ {
			if holds(s, op, n) {
				in = append(in, accesslogv3.GrpcStatusFilter_Status(s))
			}
		}
		if len(in) == 0 {
			return never(), nil
		}
		if len(in) == 17 {
			return responded(), nil
		}
		f := &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_GrpcStatusFilter{GrpcStatusFilter: &accesslogv3.GrpcStatusFilter{Statuses: in}}}
		if slices.Contains(in, accesslogv3.GrpcStatusFilter_UNKNOWN) {
			// Envoy takes UNKNOWN without a response; CEL has no status.
			f = join(true, []*accesslogv3.AccessLogFilter{responded(), f})
		}
		return f, nil
	case "response.flags":
		n, ok := intLiteral(lit)
		if !ok || n != 0 || (op != operators.NotEquals && op != operators.Greater) {
			return nil, t.unsupported(e, "response.flags is translated in response.flags != 0 (any response flag) alone, and not negated")
		}
		return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ResponseFlagFilter{ResponseFlagFilter: &accesslogv3.ResponseFlagFilter{}}}, nil
	}
	return nil, t.unsupported(attr, "not an attribute Weft can filter access logs on; those are "+attributes)
}

// headerAttrs are the request attributes read from a request header.
var headerAttrs = map[string]string{
	"request.method":    ":method",
	"request.path":      ":path",
	"request.url_path":  ":path",
	"request.host":      ":authority",
	"request.scheme":    ":scheme",
	"request.id":        "x-request-id",
	"request.useragent": "user-agent",
	"request.referer":   "referer",
}

// headerCompare translates a header attribute compared with a string.
func (t *translator) headerCompare(e celast.Expr, header, op string, lit celast.Expr, neg bool) (*accesslogv3.AccessLogFilter, error) {
	s, ok := stringLiteral(lit)
	if !ok || (op != operators.Equals && op != operators.NotEquals) {
		return nil, t.unsupported(e, "request attributes and headers are compared with a string literal by == or !=")
	}
	invert := (op == operators.NotEquals) != neg
	m := &routev3.HeaderMatcher{Name: header, InvertMatch: invert}
	if t.isURLPath(e) && strings.Contains(s, "?") { // request.url_path has no '?'
		if invert {
			return hasPath(), nil
		}
		return never(), nil
	}
	if t.isURLPath(e) {
		// The path is s, or s and a query: no regex, which a stock
		// Envoy bounds in size.
		exact := &routev3.HeaderMatcher{Name: header, InvertMatch: invert, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}}}
		query := &routev3.HeaderMatcher{Name: header, InvertMatch: invert, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s + "?"}}}}
		return join(invert, []*accesslogv3.AccessLogFilter{headerFilter(exact), headerFilter(query)}), nil
	} else {
		m.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}}
	}
	return headerFilter(m), nil
}

// stringTest translates attr.startsWith('x') and the like.
func (t *translator) stringTest(e, target celast.Expr, fn, s string, neg bool) (*accesslogv3.AccessLogFilter, error) {
	header := ""
	if name, ok := attribute(target); ok {
		header = headerAttrs[name]
	} else if h, ok := t.headerIndex(target); ok {
		header = h
	}
	if header == "" {
		if indexesHeaders(target) {
			return nil, t.unsupported(target, badHeaderName)
		}
		return nil, t.unsupported(e, fn+" is translated on request attributes and headers")
	}
	urlPath := false
	if name, _ := attribute(target); name == "request.url_path" {
		urlPath = true
	}
	if urlPath && strings.Contains(s, "?") && fn != "matches" { // request.url_path has no '?'
		if neg {
			return hasPath(), nil
		}
		return never(), nil
	}
	if s == "" && fn != "matches" {
		// Envoy's prefix, suffix and contains need one character or more;
		// every value starts with, ends with and contains "" (a missing
		// one is an error either way).
		if neg {
			return never(), nil
		}
		return headerFilter(&routev3.HeaderMatcher{Name: header, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}), nil
	}
	m := &routev3.HeaderMatcher{Name: header, InvertMatch: neg}
	var sm *matcherv3.StringMatcher
	switch {
	case fn == "startsWith":
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s}}
	case fn == "matches":
		if _, err := regexp.Compile(s); err != nil {
			return nil, fmt.Errorf("%s: the regular expression is invalid: %v", t.text(e), err)
		}
		if urlPath {
			return nil, t.unsupported(e, "matches is translated on request.path, not request.url_path")
		}
		// CEL's matches finds the pattern anywhere; Envoy's regex matches
		// the whole value.
		re := `(?s:.*?)(?:` + s + `)(?s:.*)`
		if _, err := regexp.Compile(`^(?:` + re + `)$`); err != nil { // \Q without \E
			return nil, t.unsupported(e, "the regular expression does not end where it should (a \\Q without \\E?)")
		}
		m.HeaderMatchSpecifier = regexMatch(re)
		return headerFilter(m), nil
	case urlPath && fn == "endsWith":
		m.HeaderMatchSpecifier = regexMatch(`[^?]*` + regexp.QuoteMeta(s) + `(\?.*)?`)
		return headerFilter(m), nil
	case urlPath && fn == "contains":
		m.HeaderMatchSpecifier = regexMatch(`[^?]*` + regexp.QuoteMeta(s) + `[^?]*(\?.*)?`)
		return headerFilter(m), nil
	case fn == "endsWith":
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: s}}
	default: // contains
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: s}}
	}
	m.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: sm}
	return headerFilter(m), nil
}

func (t *translator) isURLPath(e celast.Expr) bool {
	c := e.AsCall()
	for _, a := range c.Args() {
		if name, ok := attribute(a); ok && name == "request.url_path" {
			return true
		}
	}
	return false
}

// headerIndex recognises request.headers['name'] and request.headers.name.
func (t *translator) headerIndex(e celast.Expr) (string, bool) {
	switch e.Kind() {
	case celast.CallKind:
		c := e.AsCall()
		if c.FunctionName() != operators.Index || len(c.Args()) != 2 {
			return "", false
		}
		return t.headerName(c.Args()[0], c.Args()[1])
	case celast.SelectKind:
		s := e.AsSelect()
		if s.IsTestOnly() {
			return "", false
		}
		if name, ok := attribute(s.Operand()); ok && name == "request.headers" && httpguts.ValidHeaderFieldName(s.FieldName()) {
			return strings.ToLower(s.FieldName()), true
		}
	}
	return "", false
}

const badHeaderName = "a header name is a string literal of the characters HTTP allows in one, e.g. request.headers['x-user']"

// indexesHeaders reports whether e is request.headers[...] or
// request.headers.name, whatever the name.
func indexesHeaders(e celast.Expr) bool {
	var m celast.Expr
	switch e.Kind() {
	case celast.CallKind:
		if c := e.AsCall(); c.FunctionName() == operators.Index && len(c.Args()) == 2 {
			m = c.Args()[0]
		}
	case celast.SelectKind:
		m = e.AsSelect().Operand()
	}
	if m == nil {
		return false
	}
	name, ok := attribute(m)
	return ok && name == "request.headers"
}

// headerName recognises request.headers with a string literal key.
func (t *translator) headerName(m, key celast.Expr) (string, bool) {
	name, ok := attribute(m)
	if !ok || name != "request.headers" {
		return "", false
	}
	k, ok := stringLiteral(key)
	if !ok || !httpguts.ValidHeaderFieldName(k) {
		return "", false
	}
	return strings.ToLower(k), true
}

// attribute returns the dotted name of an attribute reference
// (request.headers, response.code).
func attribute(e celast.Expr) (string, bool) {
	switch e.Kind() {
	case celast.IdentKind:
		return e.AsIdent(), true
	case celast.SelectKind:
		s := e.AsSelect()
		if s.IsTestOnly() {
			return "", false
		}
		base, ok := attribute(s.Operand())
		if !ok {
			return "", false
		}
		return base + "." + s.FieldName(), true
	}
	return "", false
}

func intLiteral(e celast.Expr) (int64, bool) {
	if e.Kind() != celast.LiteralKind {
		return 0, false
	}
	switch v := e.AsLiteral().(type) {
	case types.Int:
		return int64(v), true
	case types.Uint:
		if uint64(v) > math.MaxInt64 {
			return 0, false
		}
		return int64(v), true
	}
	return 0, false
}

func stringLiteral(e celast.Expr) (string, bool) {
	if e.Kind() != celast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

// durationLiteral recognises duration('1s').
func durationLiteral(e celast.Expr) (time.Duration, bool) {
	if e.Kind() != celast.CallKind {
		return 0, false
	}
	c := e.AsCall()
	if c.FunctionName() != "duration" || c.IsMemberFunction() || len(c.Args()) != 1 {
		return 0, false
	}
	s, ok := stringLiteral(c.Args()[0])
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	return d, err == nil
}

// flip mirrors an operator for swapped operands (1 < x is x > 1).
func flip(op string) string {
	switch op {
	case operators.Less:
		return operators.Greater
	case operators.LessEquals:
		return operators.GreaterEquals
	case operators.Greater:
		return operators.Less
	case operators.GreaterEquals:
		return operators.LessEquals
	}
	return op
}

// negate is the operator of the negated comparison.
func negate(op string) string {
	switch op {
	case operators.Equals:
		return operators.NotEquals
	case operators.NotEquals:
		return operators.Equals
	case operators.Less:
		return operators.GreaterEquals
	case operators.LessEquals:
		return operators.Greater
	case operators.Greater:
		return operators.LessEquals
	}
	return operators.Less // GreaterEquals
}

func holds(v int64, op string, n int64) bool {
	switch op {
	case operators.Equals:
		return v == n
	case operators.NotEquals:
		return v != n
	case operators.Less:
		return v < n
	case operators.LessEquals:
		return v <= n
	case operators.Greater:
		return v > n
	}
	return v >= n
}

// numeric builds `value op n` from Envoy's comparisons (==, >=, <=) for
// values in [lo, hi].
func numeric(op string, n int64, mk func(*accesslogv3.ComparisonFilter) *accesslogv3.AccessLogFilter, lo, hi int64) (*accesslogv3.AccessLogFilter, error) {
	cmp := func(o accesslogv3.ComparisonFilter_Op, v int64) *accesslogv3.AccessLogFilter {
		return mk(&accesslogv3.ComparisonFilter{Op: o, Value: &corev3.RuntimeUInt32{DefaultValue: uint32(v), RuntimeKey: runtimeKey}})
	}
	n = max(lo-1, min(n, hi+1)) // n+1, n-1 below must not overflow
	switch op {
	case operators.Greater:
		op, n = operators.GreaterEquals, n+1
	case operators.Less:
		op, n = operators.LessEquals, n-1
	}
	switch op {
	case operators.Equals:
		if n < lo || n > hi {
			return never(), nil
		}
		return cmp(accesslogv3.ComparisonFilter_EQ, n), nil
	case operators.NotEquals:
		if n < lo || n > hi {
			return always(), nil
		}
		var parts []*accesslogv3.AccessLogFilter
		if n > lo {
			parts = append(parts, cmp(accesslogv3.ComparisonFilter_LE, n-1))
		}
		if n < hi {
			parts = append(parts, cmp(accesslogv3.ComparisonFilter_GE, n+1))
		}
		return join(false, parts), nil
	case operators.GreaterEquals:
		if n <= lo {
			return always(), nil
		}
		if n > hi {
			return never(), nil
		}
		return cmp(accesslogv3.ComparisonFilter_GE, n), nil
	default: // LessEquals
		if n >= hi {
			return always(), nil
		}
		if n < lo {
			return never(), nil
		}
		return cmp(accesslogv3.ComparisonFilter_LE, n), nil
	}
}

// always and never are a status code filter that every request passes
// (>= 0) and one none passes (an impossible status code).
func always() *accesslogv3.AccessLogFilter { return statusAtLeast(0) }
func never() *accesslogv3.AccessLogFilter  { return statusAtLeast(1000) }

func statusAtLeast(code uint32) *accesslogv3.AccessLogFilter {
	return statusCmp(&accesslogv3.ComparisonFilter{Op: accesslogv3.ComparisonFilter_GE, Value: &corev3.RuntimeUInt32{DefaultValue: code, RuntimeKey: runtimeKey}})
}

func statusCmp(c *accesslogv3.ComparisonFilter) *accesslogv3.AccessLogFilter {
	return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_StatusCodeFilter{StatusCodeFilter: &accesslogv3.StatusCodeFilter{Comparison: c}}}
}

// responded passes the requests that had a response (status >= 1).
func responded() *accesslogv3.AccessLogFilter { return statusAtLeast(1) }

// hasPath passes every HTTP request (those with a request.url_path),
// no TCP connection.
func hasPath() *accesslogv3.AccessLogFilter {
	return headerFilter(&routev3.HeaderMatcher{Name: ":path", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}})
}

// join is the and/or of parts; Envoy's and_filter and or_filter need two
// or more, so one part stands alone.
func join(and bool, parts []*accesslogv3.AccessLogFilter) *accesslogv3.AccessLogFilter {
	if len(parts) == 1 {
		return parts[0]
	}
	if and {
		return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_AndFilter{AndFilter: &accesslogv3.AndFilter{Filters: parts}}}
	}
	return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_OrFilter{OrFilter: &accesslogv3.OrFilter{Filters: parts}}}
}

func headerFilter(m *routev3.HeaderMatcher) *accesslogv3.AccessLogFilter {
	return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_HeaderFilter{HeaderFilter: &accesslogv3.HeaderFilter{Header: m}}}
}

func regexMatch(re string) *routev3.HeaderMatcher_StringMatch {
	return &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}}
}
