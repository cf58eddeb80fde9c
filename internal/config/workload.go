package config

import (
	"errors"
	"reflect"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Workload is the spec of Weft's own kind Workload (apiVersion
// weft.dev/v1alpha1): a program `weft up` runs, with a sidecar in front of
// each copy, serving one service of the mesh. Decoding is strict: an
// unknown field is an error.
//
//	apiVersion: weft.dev/v1alpha1
//	kind: Workload
//	metadata: {name: reviews-v2, namespace: default}
//	spec:
//	  service: reviews
//	  labels: {app: reviews, version: v2}
//	  ports: [{name: http, number: 9080}]
//	  command: [weft, demo-app, reviews, --port, "${PORT}"]
//	  upstreams: [{service: ratings, port: 9080, env: RATINGS_ADDR}]
type Workload struct {
	// Service is the short name of the service the workload serves; it
	// becomes "<service>.<namespace>.svc.cluster.local". Default: the
	// Workload's metadata.name.
	Service string `yaml:"service"`
	// Labels of every instance (for example app and version), matched by
	// DestinationRule subsets and workload selectors.
	Labels map[string]string `yaml:"labels"`
	// ServiceAccount is the identity of the instances. Default: empty,
	// meaning the namespace's "default" account (decided by the runtime).
	ServiceAccount string `yaml:"serviceAccount"`
	// Locality is where the instances run, "region/zone/subzone" (zone
	// and subzone optional), as a WorkloadEntry's locality: their
	// endpoints carry it, and their sidecars balance locality-aware
	// services (a DestinationRule with outlierDetection or
	// localityLbSetting.distribute) from it. Default: none.
	Locality string `yaml:"locality"`
	// Ports the service exposes.
	Ports []WorkloadPort `yaml:"ports"`
	// Replicas is how many instances to run. Default: 1. Zero is allowed
	// (the service exists with no endpoints).
	Replicas int `yaml:"replicas"`
	// Command is the program and its arguments. "${PORT}" (the first
	// port's application port) and "${PORT_<NAME>}" (the port named NAME,
	// upper-cased, '-' as '_') are expanded by the runtime for each
	// instance.
	Command []string `yaml:"command"`
	// Env is added to the program's environment (references expand as in
	// Command).
	Env map[string]string `yaml:"env"`
	// WorkingDir is the program's working directory, relative to the
	// config file's folder when not absolute. Default: that folder.
	WorkingDir string `yaml:"workingDir"`
	// Sidecar says whether a Weft sidecar fronts each instance. Default:
	// true.
	Sidecar bool `yaml:"sidecar"`
	// Upstreams are mesh services the program reaches through a local port
	// of its own sidecar instead of HTTP_PROXY (for clients that do not
	// honour the proxy variables: raw TCP, databases, many Node.js apps).
	// The runtime gives each one a free loopback port per instance and
	// sets its Env variable. Ignored when Sidecar is false. Default: none.
	Upstreams []WorkloadUpstream `yaml:"upstreams"`
	// Metrics, when set, says the program serves its own Prometheus
	// metrics; its sidecar merges them with its own on the sidecar's
	// stats port (as Istio's 15020), so one scrape gets both.
	Metrics *WorkloadMetrics `yaml:"metrics"`
}

// InstanceLabels are the labels each instance of w carries, which
// workload selectors match: w's Labels, and "app" set to the service name
// when they have none.
func (w *Workload) InstanceLabels() map[string]string {
	out := make(map[string]string, len(w.Labels)+1)
	for k, v := range w.Labels {
		out[k] = v
	}
	if _, ok := out["app"]; !ok && w.Service != "" {
		out["app"] = w.Service
	}
	return out
}

// WorkloadMetrics is where a Workload's program serves Prometheus metrics.
type WorkloadMetrics struct {
	// Port names one of the Workload's ports. Default: the first port.
	Port string `yaml:"port"`
	// Path of the metrics page. Default: /metrics.
	Path string `yaml:"path"`
}

// WorkloadUpstream is one mesh service a Workload reaches through a local
// port of its sidecar ("explicit local upstream port"). The sidecar listens
// on 127.0.0.1:<local port> and sends what arrives there to the service
// port, with the routes of the service's VirtualService for HTTP ports.
type WorkloadUpstream struct {
	// Service is the host of the service: a short name ("reviews"),
	// "name.namespace", or a fully qualified name, resolved relative to
	// the Workload's namespace like every other host. Required.
	Service string `yaml:"service"`
	// Port is the service port to reach (9080), not a local port.
	// Required.
	Port uint32 `yaml:"port"`
	// Env is the name of the environment variable the runtime sets to
	// "127.0.0.1:<local port>" for the program; it can also be used as
	// "${NAME}" in command and env. Default: UpstreamEnvName(Service,
	// Port), "<SERVICE>_<PORT>_ADDR" upper-cased with every character
	// other than a letter or digit as '_' ("REVIEWS_9080_ADDR").
	Env string `yaml:"env"`
}

// UpstreamEnvName is the default Env of an upstream:
// ("reviews", 9080) -> "REVIEWS_9080_ADDR",
// ("ratings.shop", 9080) -> "RATINGS_SHOP_9080_ADDR".
func UpstreamEnvName(service string, port uint32) string {
	b := []byte(strings.ToUpper(service))
	for i, c := range b {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			b[i] = '_'
		}
	}
	return string(b) + "_" + strconv.FormatUint(uint64(port), 10) + "_ADDR"
}

// WorkloadPort is one port of a Workload.
type WorkloadPort struct {
	// Name of the port, unique in the Workload ("http", "grpc-api"); its
	// prefix gives the protocol when Protocol and AppProtocol are empty.
	Name string `yaml:"name"`
	// Number is the service port clients dial (9080). The application's
	// real port is chosen by the runtime.
	Number uint32 `yaml:"number"`
	// Protocol: HTTP, HTTP2, GRPC, TCP, TLS or HTTPS. Default: from
	// AppProtocol, then the name's prefix, then TCP.
	Protocol string `yaml:"protocol"`
	// AppProtocol is the Kubernetes-style application protocol ("http").
	AppProtocol string `yaml:"appProtocol"`
}

// PortEnvName is the NAME in "${PORT_<NAME>}" for a port name:
// "grpc-api" -> "GRPC_API".
func PortEnvName(portName string) string {
	return strings.ToUpper(strings.ReplaceAll(portName, "-", "_"))
}

// rawWorkload is the decoding form of Workload: pointers tell an omitted
// field (take the default) from a zero one.
type rawWorkload struct {
	Service        string             `yaml:"service"`
	Labels         map[string]string  `yaml:"labels"`
	ServiceAccount string             `yaml:"serviceAccount"`
	Locality       string             `yaml:"locality"`
	Ports          []WorkloadPort     `yaml:"ports"`
	Replicas       *int               `yaml:"replicas"`
	Command        []string           `yaml:"command"`
	Env            map[string]string  `yaml:"env"`
	WorkingDir     string             `yaml:"workingDir"`
	Sidecar        *bool              `yaml:"sidecar"`
	Upstreams      []WorkloadUpstream `yaml:"upstreams"`
	Metrics        *WorkloadMetrics   `yaml:"metrics"`
}

// decodeWorkload decodes a Workload spec strictly, recording field lines.
func decodeWorkload(spec *yaml.Node, r *Resource) (*Workload, []fieldError) {
	r.lines["spec"] = spec.Line
	s := &structChecker{lines: r.lines, budget: maxNodes}
	s.check(spec, reflect.TypeOf(rawWorkload{}), "spec")
	if len(s.errs) > 0 {
		return nil, s.errs
	}
	var raw rawWorkload
	if err := spec.Decode(&raw); err != nil {
		return nil, yamlTypeErrors(err, r)
	}
	w := &Workload{
		Service:        raw.Service,
		Labels:         raw.Labels,
		ServiceAccount: raw.ServiceAccount,
		Locality:       raw.Locality,
		Ports:          raw.Ports,
		Replicas:       1,
		Command:        raw.Command,
		Env:            raw.Env,
		WorkingDir:     raw.WorkingDir,
		Sidecar:        true,
	}
	if w.Service == "" {
		w.Service = r.Name
	}
	for _, u := range raw.Upstreams {
		if u.Env == "" {
			u.Env = UpstreamEnvName(u.Service, u.Port)
		}
		w.Upstreams = append(w.Upstreams, u)
	}
	if raw.Replicas != nil {
		w.Replicas = *raw.Replicas
	}
	if raw.Sidecar != nil {
		w.Sidecar = *raw.Sidecar
	}
	if m := raw.Metrics; m != nil {
		w.Metrics = &WorkloadMetrics{Port: m.Port, Path: m.Path}
		if w.Metrics.Port == "" && len(w.Ports) > 0 {
			w.Metrics.Port = w.Ports[0].Name
		}
		if w.Metrics.Path == "" {
			w.Metrics.Path = "/metrics"
		}
	}
	return w, nil
}

// yamlTypeErrors turns the YAML decoder's "line N: cannot unmarshal ..."
// errors into field errors placed on the field written at that line.
func yamlTypeErrors(err error, r *Resource) []fieldError {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []fieldError{{path: "spec", line: r.LineOf("spec"), msg: err.Error()}}
	}
	byLine := map[int]string{}
	for p, l := range r.lines {
		if old, ok := byLine[l]; !ok || len(p) > len(old) {
			byLine[l] = p
		}
	}
	var out []fieldError
	for _, e := range te.Errors {
		fe := fieldError{path: "spec", line: r.LineOf("spec"), msg: e}
		if m := yamlLineRE.FindStringSubmatchIndex(e); m != nil && m[0] == 0 {
			n, _ := strconv.Atoi(e[m[2]:m[3]])
			fe.line = n
			if p, ok := byLine[n]; ok {
				fe.path = p
			}
			fe.msg = strings.TrimLeft(e[m[1]:], ": ")
		}
		out = append(out, fe)
	}
	return out
}

// structChecker walks a YAML node against a Go struct type's yaml tags,
// reporting unknown fields and shape mismatches and recording lines.
type structChecker struct {
	lines  map[string]int
	errs   []fieldError
	budget int
}

func (s *structChecker) check(n *yaml.Node, t reflect.Type, path string) {
	n = resolveAlias(n)
	if s.budget--; s.budget < 0 {
		if s.budget == -1 {
			s.errs = append(s.errs, fieldError{path, n.Line, "document too large"})
		}
		return
	}
	if isNull(n) {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			s.errs = append(s.errs, fieldError{path, n.Line, "expected a mapping, got " + describe(n)})
			return
		}
		fields := map[string]reflect.Type{}
		var names []string
		for i := 0; i < t.NumField(); i++ {
			tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			fields[tag] = t.Field(i).Type
			names = append(names, tag)
		}
		seen := keySet{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := fieldPath(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				s.errs = append(s.errs, fieldError{p, k.Line, "unknown field " + strconv.Quote(k.Value) + suggestFrom(k.Value, names)})
				continue
			}
			if first, dup := seen.repeat(k); dup {
				s.errs = append(s.errs, fieldError{p, k.Line, duplicateField(k.Value, first)})
				continue
			}
			s.lines[p] = k.Line
			s.check(n.Content[i+1], ft, p)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			s.errs = append(s.errs, fieldError{path, n.Line, "expected a list, got " + describe(n)})
			return
		}
		for i, item := range n.Content {
			p := indexPath(path, i)
			s.lines[p] = item.Line
			s.check(item, t.Elem(), p)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			s.errs = append(s.errs, fieldError{path, n.Line, "expected a mapping, got " + describe(n)})
			return
		}
		seen := keySet{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := keyPath(path, n.Content[i].Value)
			if first, dup := seen.repeat(n.Content[i]); dup {
				s.errs = append(s.errs, fieldError{p, n.Content[i].Line, duplicateKey(n.Content[i].Value, first)})
				continue
			}
			s.lines[p] = n.Content[i].Line
			s.check(n.Content[i+1], t.Elem(), p)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			s.errs = append(s.errs, fieldError{path, n.Line, "expected a single value, got " + describe(n)})
		}
	}
}
