package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/validate"
)

// routes installs the admin API. Everything is JSON except /metrics and
// config dumps; the CLI (weft status, get, apply, delete, proxy-status)
// is a client of these routes.
func (s *Server) routes() {
	s.mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-s.ready:
			fmt.Fprintln(w, "ready")
		default:
			http.Error(w, "not ready: first config not built yet", http.StatusServiceUnavailable)
		}
	})
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("GET /debug/syncz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.xds.Status())
	})
	s.mux.HandleFunc("GET /debug/config_dump", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("proxy")
		if id == "" {
			http.Error(w, "missing ?proxy=ID (see /debug/syncz for the IDs)", http.StatusBadRequest)
			return
		}
		data, err := s.xds.ConfigDump(id)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(data)
	})
	s.mux.HandleFunc("GET /debug/registry", func(w http.ResponseWriter, r *http.Request) {
		snap := s.Snapshot()
		if snap == nil {
			writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "no config built yet"})
			return
		}
		writeJSON(w, http.StatusOK, registryView(snap))
	})
	s.mux.HandleFunc("GET /debug/config", func(w http.ResponseWriter, r *http.Request) {
		snap := s.Snapshot()
		if snap == nil {
			writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "no config built yet"})
			return
		}
		writeJSON(w, http.StatusOK, configView(snap))
	})
	s.mux.HandleFunc("GET /api/v1/stat", func(w http.ResponseWriter, r *http.Request) {
		window := time.Minute
		if v := r.URL.Query().Get("window"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				writeJSON(w, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("window %q: want a duration such as 30s or 5m", v)})
				return
			}
			window = d
		}
		writeJSON(w, http.StatusOK, s.stats.Stat(window, r.URL.Query().Get("target")))
	})
	s.mux.HandleFunc("GET /api/v1/tap", s.handleTap)
	s.mux.HandleFunc("GET /api/v1/authz/check", s.handleAuthzCheck)
	s.mux.HandleFunc("GET /api/v1/resources", s.handleGet)
	s.mux.HandleFunc("POST /api/v1/apply", s.handleApply)
	s.mux.HandleFunc("DELETE /api/v1/resources/{kind}/{namespace}/{name}", s.handleDelete)
}

type errorBody struct {
	Error    string   `json:"error"`
	Findings []string `json:"findings,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// ServiceView is one service in /debug/registry.
type ServiceView struct {
	Hostname   string         `json:"hostname"`
	Namespace  string         `json:"namespace"`
	Ports      []model.Port   `json:"ports"`
	Addresses  []string       `json:"addresses,omitempty"`
	Resolution string         `json:"resolution"`
	External   bool           `json:"meshExternal,omitempty"`
	Source     string         `json:"source"`
	Endpoints  []EndpointView `json:"endpoints"`
}

// EndpointView is one endpoint in /debug/registry.
type EndpointView struct {
	Address        string            `json:"address"`
	Ports          map[string]uint32 `json:"ports,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	Workload       string            `json:"workload,omitempty"`
	ServiceAccount string            `json:"serviceAccount,omitempty"`
	Sidecar        bool              `json:"sidecar"`
}

// RegistryView is /debug/registry.
type RegistryView struct {
	Version   uint64            `json:"version"`
	Services  []ServiceView     `json:"services"`
	Instances []*model.Instance `json:"instances"`
}

func registryView(snap *model.Snapshot) RegistryView {
	v := RegistryView{Version: snap.Version, Services: []ServiceView{}, Instances: []*model.Instance{}}
	for _, svc := range snap.SortedServices() {
		sv := ServiceView{Hostname: svc.Hostname, Namespace: svc.Namespace, Ports: svc.Ports, Addresses: svc.Addresses,
			Resolution: svc.Resolution.String(), External: svc.MeshExternal, Source: svc.Source, Endpoints: []EndpointView{}}
		for _, ep := range svc.Endpoints {
			sv.Endpoints = append(sv.Endpoints, EndpointView{Address: ep.Address, Ports: ep.Ports, Labels: ep.Labels,
				Workload: ep.Workload, ServiceAccount: ep.ServiceAccount, Sidecar: ep.Sidecar})
		}
		v.Services = append(v.Services, sv)
	}
	for _, in := range snap.Instances {
		v.Instances = append(v.Instances, in)
	}
	sort.Slice(v.Instances, func(i, j int) bool { return v.Instances[i].ProxyKey() < v.Instances[j].ProxyKey() })
	return v
}

// ResourceView is one resource in /debug/config and /api/v1/resources.
type ResourceView struct {
	Kind            string   `json:"kind"`
	Namespace       string   `json:"namespace"`
	Name            string   `json:"name"`
	File            string   `json:"file,omitempty"`
	Line            int      `json:"line,omitempty"`
	State           string   `json:"state"`
	ServingLastGood bool     `json:"servingLastGood,omitempty"`
	Findings        []string `json:"findings,omitempty"`
	YAML            string   `json:"yaml,omitempty"`
}

// ConfigView is /debug/config.
type ConfigView struct {
	Version   uint64         `json:"version"`
	Resources []ResourceView `json:"resources"`
}

func configView(snap *model.Snapshot) ConfigView {
	v := ConfigView{Version: snap.Version, Resources: []ResourceView{}}
	for _, st := range snap.Status {
		v.Resources = append(v.Resources, statusView(st))
	}
	return v
}

func statusView(st model.ResourceStatus) ResourceView {
	rv := ResourceView{Kind: st.Kind, Namespace: st.Namespace, Name: st.Name, File: st.File, Line: st.Line,
		State: string(st.State), ServingLastGood: st.ServingLastGood}
	for _, f := range st.Findings {
		rv.Findings = append(rv.Findings, f.String())
	}
	return rv
}

// handleGet lists resources: ?kind=K (case-insensitive, required),
// &name=N, &namespace=NS.
func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	kind, name, ns := q.Get("kind"), q.Get("name"), q.Get("namespace")
	snap := s.Snapshot()
	if snap == nil {
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "no config built yet"})
		return
	}
	files, err := scanFolder(s.opts.ConfigDir)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: err.Error()})
		return
	}
	text := map[string]string{}
	for _, docs := range files {
		for _, d := range docs {
			text[d.key()] = d.Text
		}
	}
	out := []ResourceView{}
	for _, st := range snap.Status {
		if kind != "" && !strings.EqualFold(st.Kind, kind) {
			continue
		}
		if name != "" && st.Name != name {
			continue
		}
		if ns != "" && st.Namespace != ns {
			continue
		}
		rv := statusView(st)
		rv.YAML = text[resourceKey(st.Kind, st.Namespace, st.Name)]
		out = append(out, rv)
	}
	if name != "" && len(out) == 0 {
		writeJSON(w, http.StatusNotFound, errorBody{Error: fmt.Sprintf("%s %q not found", kind, name)})
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// ApplyResult is the answer to apply and delete.
type ApplyResult struct {
	// Changed lists "Kind namespace/name" of what was written.
	Changed []string `json:"changed"`
	// Files lists the files written or removed.
	Files []string `json:"files"`
	// Version is the model version that includes the change.
	Version uint64 `json:"version"`
	// Warnings found while validating the change.
	Warnings []string `json:"warnings,omitempty"`
}

func (s *Server) handleApply(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: err.Error()})
		return
	}
	name := r.URL.Query().Get("file")
	if name == "" {
		name = "<apply>"
	}
	// Schema check of the submitted documents on their own, with their
	// own file name and lines in the messages.
	if _, findings := config.Parse(name, body); hasErrors(findings) {
		writeJSON(w, http.StatusUnprocessableEntity, errorBody{Error: "rejected: nothing was changed", Findings: findingStrings(findings)})
		return
	}
	docs, err := parseDocs(name, string(body))
	if err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, errorBody{Error: "rejected: nothing was changed", Findings: []string{err.Error()}})
		return
	}
	if len(docs) == 0 {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "no resources in the request"})
		return
	}
	s.edit(w, r, folderEdit{put: docs}, &submitted{name: name, body: body}, r.URL.Query().Get("dryRun") == "true")
}

// submitted is the text of an apply, so findings about it name the
// submitted file and its lines.
type submitted struct {
	name string
	body []byte
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	key := resourceKey(r.PathValue("kind"), r.PathValue("namespace"), r.PathValue("name"))
	s.edit(w, r, folderEdit{delete: map[string]bool{key: true}}, nil, r.URL.Query().Get("dryRun") == "true")
}

// edit validates a change against a copy of the config folder and, if it
// makes nothing that was valid invalid, writes it to the folder and waits
// for the model that includes it.
func (s *Server) edit(w http.ResponseWriter, r *http.Request, e folderEdit, src *submitted, dryRun bool) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	dir := s.opts.ConfigDir
	files, err := scanFolder(dir)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: fmt.Sprintf("reading config folder: %v", err)})
		return
	}
	// Keys must be compared case-insensitively on kind.
	if e.delete != nil {
		norm := map[string]bool{}
		for k := range e.delete {
			norm[strings.ToLower(k)] = true
		}
		e.delete = lowerKindKeys(files, norm)
	}
	changes, missing, err := e.plan(dir, files)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: err.Error()})
		return
	}
	if len(missing) > 0 {
		writeJSON(w, http.StatusNotFound, errorBody{Error: fmt.Sprintf("not found in %s: %s", dir, strings.Join(missing, ", "))})
		return
	}
	// The trial validates the submitted text as it was sent (so messages
	// point at its lines) in place of the versions it replaces.
	trialChanges := changes
	if src != nil {
		put := map[string]bool{}
		for _, d := range e.put {
			put[d.key()] = true
		}
		trialChanges = map[string]*string{}
		for f, docs := range files {
			var replaced []doc
			for _, d := range docs {
				if put[d.key()] {
					replaced = append(replaced, d)
				}
			}
			if len(replaced) == 0 {
				continue
			}
			data, err := os.ReadFile(f)
			if err != nil {
				writeJSON(w, http.StatusInternalServerError, errorBody{Error: err.Error()})
				return
			}
			text := blankDocs(string(data), replaced)
			trialChanges[f] = &text
		}
	}
	before, after, err := s.trial(dir, trialChanges, src)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: err.Error()})
		return
	}
	touched := map[string]bool{}
	for _, d := range e.put {
		touched[strings.ToLower(d.key())] = true
	}
	broken, warnings := compareStatus(before, after, touched)
	if len(broken) > 0 {
		writeJSON(w, http.StatusUnprocessableEntity, errorBody{Error: "rejected: nothing was changed", Findings: broken})
		return
	}
	res := ApplyResult{Changed: []string{}, Files: []string{}, Warnings: warnings}
	for _, d := range e.put {
		res.Changed = append(res.Changed, fmt.Sprintf("%s %s/%s", d.Kind, d.Namespace, d.Name))
	}
	for k := range e.delete {
		res.Changed = append(res.Changed, k)
	}
	for f := range changes {
		res.Files = append(res.Files, f)
	}
	sort.Strings(res.Files)
	if dryRun {
		writeJSON(w, http.StatusOK, res)
		return
	}
	snap := s.Snapshot()
	var v uint64
	if snap != nil {
		v = snap.Version
	}
	for f, content := range changes {
		if content == nil {
			err = os.Remove(f)
		} else {
			err = writeAtomic(f, []byte(*content))
		}
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, errorBody{Error: fmt.Sprintf("writing %s: %v", f, err)})
			return
		}
	}
	s.notify()
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if snap, err = s.WaitNewer(ctx, v); err == nil {
		res.Version = snap.Version
	}
	s.log.Info("config changed through the admin API", "changed", res.Changed, "version", res.Version)
	writeJSON(w, http.StatusOK, res)
}

func lowerKindKeys(files map[string][]doc, want map[string]bool) map[string]bool {
	out := map[string]bool{}
	for k := range want {
		out[k] = true
	}
	for _, docs := range files {
		for _, d := range docs {
			if want[strings.ToLower(d.key())] {
				delete(out, strings.ToLower(d.key()))
				out[d.key()] = true
			}
		}
	}
	return out
}

// trial builds the model of the folder as it is and as it would be after
// changes, in a scratch copy, with the runtime's instances.
func (s *Server) trial(dir string, changes map[string]*string, src *submitted) (before, after *model.Snapshot, err error) {
	instances := s.instances.List()
	set, _ := config.Load(dir)
	before = validate.Build(set, instances, nil)

	scratch, err := os.MkdirTemp("", "weft-trial-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(scratch)
	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !isConfigFile(path) {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return writeAtomic(filepath.Join(scratch, rel), data)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("copying config folder: %w", err)
	}
	for f, content := range changes {
		rel, _ := filepath.Rel(dir, f)
		target := filepath.Join(scratch, rel)
		if content == nil {
			if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, nil, err
			}
			continue
		}
		if err := writeAtomic(target, []byte(*content)); err != nil {
			return nil, nil, err
		}
	}
	srcFile := ""
	if src != nil {
		srcFile = filepath.Join(scratch, "weft-submitted-apply.yaml")
		if err := writeAtomic(srcFile, src.body); err != nil {
			return nil, nil, err
		}
	}
	set, _ = config.Load(scratch)
	after = validate.Build(set, instances, nil)
	// Messages name the real folder and the submitted file, not the
	// scratch copy.
	rename := func(p string) string {
		if p == srcFile && src != nil {
			return src.name
		}
		if rel, err := filepath.Rel(scratch, p); err == nil && !strings.HasPrefix(rel, "..") {
			return filepath.Join(dir, rel)
		}
		return p
	}
	for i := range after.Status {
		st := &after.Status[i]
		st.File = rename(st.File)
		for j := range st.Findings {
			f := &st.Findings[j]
			f.Meta.File = rename(f.Meta.File)
			if srcFile != "" {
				f.Message = strings.ReplaceAll(f.Message, srcFile, src.name)
			}
			f.Message = strings.ReplaceAll(f.Message, scratch, dir)
		}
	}
	return before, after, nil
}

// compareStatus returns the errors of resources that the change made
// invalid, of new invalid ones and of the resources being put (touched,
// keyed by lower-case resourceKey), and the warnings the change adds.
func compareStatus(before, after *model.Snapshot, touched map[string]bool) (broken, warnings []string) {
	was := map[string]model.ResourceStatus{}
	for _, st := range before.Status {
		was[st.Key()] = st
	}
	for _, st := range after.Status {
		prev, existed := was[st.Key()]
		for _, f := range st.Findings {
			switch {
			case f.Severity == model.SeverityError && (!existed || prev.State == model.StateValid ||
				touched[strings.ToLower(resourceKey(st.Kind, st.Namespace, st.Name))]):
				broken = append(broken, f.String())
			case f.Severity == model.SeverityWarning && !containsFinding(prev.Findings, f):
				warnings = append(warnings, f.String())
			}
		}
	}
	return broken, warnings
}

func containsFinding(fs []model.Finding, f model.Finding) bool {
	for _, g := range fs {
		if g.Message == f.Message && g.Field == f.Field {
			return true
		}
	}
	return false
}

func hasErrors(fs []model.Finding) bool {
	for _, f := range fs {
		if f.Severity == model.SeverityError {
			return true
		}
	}
	return false
}

func findingStrings(fs []model.Finding) []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		out = append(out, f.String())
	}
	return out
}
