// Package config reads Weft's mesh configuration: YAML files holding Istio
// networking resources (ServiceEntry, WorkloadEntry, VirtualService,
// DestinationRule, Sidecar, Gateway) and Weft's own Workload kind.
//
// Loading is schema checking only: every document is decoded into its typed
// spec (the Go types of istio.io/api for Istio kinds, Workload for Weft's),
// unknown fields and values are rejected with the path and line of the
// offending field, and every resource remembers the line of each field so
// later checks (package validate) can point at the right line. Whether the
// resources make sense together (hosts, subsets, weights) is decided by
// package validate.
//
// Nothing here panics on bad input and nothing is silently ignored: a
// problem is a model.Finding, and a resource with a problem is kept in the
// Set marked Invalid so its status can be reported.
package config

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"weft.dev/weft/internal/model"
)

// Kinds read by Weft.
const (
	KindServiceEntry    = "ServiceEntry"
	KindWorkloadEntry   = "WorkloadEntry"
	KindVirtualService  = "VirtualService"
	KindDestinationRule = "DestinationRule"
	KindSidecar         = "Sidecar"
	KindGateway         = "Gateway"
	KindWorkload        = "Workload"
)

// WeftAPIVersion is the apiVersion of Weft's own kinds.
const WeftAPIVersion = "weft.dev/v1alpha1"

// Resource is one document of a config file after schema checking.
type Resource struct {
	// Meta names the resource and the file and line of its first line.
	model.Meta
	// APIVersion as written ("networking.istio.io/v1").
	APIVersion string
	// Labels from metadata.labels.
	Labels map[string]string
	// Annotations from metadata.annotations.
	Annotations map[string]string
	// Spec is the decoded spec: *networking.ServiceEntry,
	// *networking.WorkloadEntry, *networking.VirtualService,
	// *networking.DestinationRule, *networking.Sidecar, *networking.Gateway
	// (istio.io/api/networking/v1alpha3) or *Workload. It is nil when
	// Invalid is true. Readers must not mutate it: clone it first.
	Spec any
	// Invalid is true when loading found an error in the resource (schema,
	// unknown field, unsupported kind, duplicate); its findings are in the
	// Set's Findings with this resource's Meta.
	Invalid bool

	// lines maps a field path ("spec.http[0].route") to its line.
	lines map[string]int
}

// LineOf returns the line of a field path such as
// "spec.http[0].route[1].destination.subset". A path not written in the
// file falls back to its nearest written parent, and finally to the
// resource's first line. It returns 0 when the resource has no file.
func (r *Resource) LineOf(field string) int {
	for p := field; p != ""; p = parentPath(p) {
		if l, ok := r.lines[p]; ok {
			return l
		}
	}
	return r.Line
}

// parentPath drops the last segment of a field path: "a.b[0]" -> "a.b",
// "a.b" -> "a", "a" -> "".
func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

type key struct{ kind, namespace, name string }

// Set is the resources read from a group of files, in the order read
// (files in the order given, folders in lexical order, documents in file
// order), and every finding about them. A Set is not modified after Load
// or Parse returns and may be read from many goroutines.
type Set struct {
	// Resources in the order read, including invalid ones.
	Resources []*Resource
	// Findings from loading, in the order found. Findings about a resource
	// carry its Meta; findings about a whole file (unreadable, bad YAML)
	// carry only File and Line.
	Findings []model.Finding

	index map[key]*Resource
}

// Get returns the first resource read with this kind, namespace and name,
// or nil.
func (s *Set) Get(kind, namespace, name string) *Resource {
	if s == nil {
		return nil
	}
	return s.index[key{kind, namespace, name}]
}

// LineOf returns the line of field in the resource m names (the one read
// at m.File:m.Line), or m.Line if the resource is unknown.
func (s *Set) LineOf(m model.Meta, field string) int {
	if s != nil {
		for _, r := range s.Resources {
			if r.Meta == m {
				return r.LineOf(field)
			}
		}
	}
	return m.Line
}

// HasErrors reports whether any loading finding is an error.
func (s *Set) HasErrors() bool {
	for _, f := range s.Findings {
		if f.Severity == model.SeverityError {
			return true
		}
	}
	return false
}

func (s *Set) add(r *Resource, fs []model.Finding) {
	if s.index == nil {
		s.index = map[key]*Resource{}
	}
	s.Findings = append(s.Findings, fs...)
	if r == nil {
		return
	}
	k := key{r.Kind, r.Namespace, r.Name}
	if first, ok := s.index[k]; ok {
		r.Invalid = true
		r.Spec = nil
		s.Findings = append(s.Findings, model.Finding{
			Severity: model.SeverityError,
			Meta:     r.Meta,
			Line:     r.LineOf("metadata.name"),
			Field:    "metadata.name",
			Message: fmt.Sprintf("%s is defined twice (first at %s:%d); rename or remove one",
				r.Key(), first.File, first.Line),
		})
	} else {
		s.index[k] = r
	}
	s.Resources = append(s.Resources, r)
}

// Load reads the files and folders at paths. A folder is read recursively:
// every *.yaml and *.yml file in it, in lexical order, skipping files and
// folders whose names start with "." (editor and VCS files). A file named
// directly is read whatever its extension. Each file may hold many
// documents separated by "---".
//
// The returned findings are the Set's Findings. The Set is never nil.
func Load(paths ...string) (*Set, []model.Finding) {
	set := loadFiles(paths, parseInto)
	return set, set.Findings
}

// loadFiles reads the files at paths as Load does and hands each one's
// bytes to add.
func loadFiles(paths []string, add func(set *Set, file string, data []byte)) *Set {
	set := &Set{}
	for _, p := range paths {
		files, err := expand(p)
		if err != nil {
			set.add(nil, []model.Finding{fileFinding(p, 0, fmt.Sprintf("cannot read config: %v", err))})
			continue
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				set.add(nil, []model.Finding{fileFinding(f, 0, fmt.Sprintf("cannot read config: %v", err))})
				continue
			}
			add(set, f, data)
		}
	}
	return set
}

// Loader is Load with a memory of the last load: a file whose bytes did
// not change since then is not parsed again, and its resources are copies
// of the ones parsed before (their specs shared, which readers do not
// change). A control plane that reloads its whole folder on every edit
// parses only the files edited. It is safe for concurrent use.
type Loader struct {
	mu    sync.Mutex
	files map[string]loadedFile
}

// loadedFile is a file's bytes and its documents as parsed.
type loadedFile struct {
	data []byte
	docs []parsedDoc
}

// Load is Load, parsing only the files that changed since l's last Load.
func (l *Loader) Load(paths ...string) (*Set, []model.Finding) {
	l.mu.Lock()
	defer l.mu.Unlock()
	next := map[string]loadedFile{}
	set := loadFiles(paths, func(set *Set, file string, data []byte) {
		lf, ok := l.files[file]
		if !ok || !bytes.Equal(lf.data, data) {
			lf = loadedFile{data: data, docs: parseDocuments(file, data)}
		}
		next[file] = lf
		for _, d := range lf.docs {
			var r *Resource
			if d.r != nil {
				c := *d.r
				r = &c
			}
			set.add(r, d.fs)
		}
	})
	l.files = next
	return set, set.Findings
}

// Parse reads one file's bytes as Load would read the file, without
// touching the file system (for checking a file before it is written).
func Parse(file string, data []byte) (*Set, []model.Finding) {
	set := &Set{}
	parseInto(set, file, data)
	return set, set.Findings
}

// expand lists the config files a path stands for.
func expand(p string) ([]string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	var out []string
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if path != p && strings.HasPrefix(name, ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		if ext := strings.ToLower(filepath.Ext(name)); ext == ".yaml" || ext == ".yml" {
			out = append(out, path)
		}
		return nil
	})
	sort.Strings(out) // WalkDir is lexical already; keep the promise explicit
	return out, err
}

func fileFinding(file string, line int, msg string) model.Finding {
	return model.Finding{
		Severity: model.SeverityError,
		Meta:     model.Meta{File: file, Line: line},
		Line:     line,
		Message:  msg,
	}
}

// fieldPath joins a parent path and a field name.
func fieldPath(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func indexPath(parent string, i int) string { return parent + "[" + strconv.Itoa(i) + "]" }

func keyPath(parent, k string) string { return parent + "[" + k + "]" }
