package controlplane

import (
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"strings"

	"weft.dev/weft/internal/authzcheck"
	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/spiffeid"
)

// AuthzCheckResponse is the answer of GET /api/v1/authz/check: whether a
// call from a source to a service would be allowed, decided for each
// workload behind the service by the policies its sidecar gets now.
type AuthzCheckResponse struct {
	// From is the source as resolved: its SPIFFE ID ("" for a source
	// without a sidecar) and namespace.
	From          string `json:"from"`
	FromPrincipal string `json:"fromPrincipal,omitempty"`
	FromNamespace string `json:"fromNamespace,omitempty"`
	// RequestPrincipal is the simulated token's "<iss>/<sub>", "" for a
	// call without a token (unauthenticated).
	RequestPrincipal string `json:"requestPrincipal,omitempty"`
	// To is the destination service's host name.
	To string `json:"to"`
	// Decision is DENY if any workload behind the service denies, else
	// ALLOW.
	Decision string `json:"decision"`
	// Results per destination workload (one instance each).
	Results []authzcheck.Result `json:"results"`
}

// handleAuthzCheck serves GET /api/v1/authz/check?from=&to=&path=&method=&header=k=v&port=&requestPrincipal=&claim=k=v.
// from is a workload, service or instance name (optionally "name.namespace"),
// a SPIFFE ID, or "none" for a caller without a sidecar; to is a service;
// requestPrincipal ("<iss>/<sub>") and claims simulate a valid JWT.
func (s *Server) handleAuthzCheck(w http.ResponseWriter, r *http.Request) {
	snap := s.Snapshot()
	if snap == nil {
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "no config built yet"})
		return
	}
	resp, code, err := AuthzCheck(snap, r.URL.Query())
	if err != nil {
		writeJSON(w, code, errorBody{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// AuthzCheck answers one check against snap; code is the HTTP status of
// an error.
func AuthzCheck(snap *model.Snapshot, q map[string][]string) (*AuthzCheckResponse, int, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	from, to := get("from"), get("to")
	if from == "" || to == "" {
		return nil, http.StatusBadRequest, fmt.Errorf("both from and to are needed")
	}
	req := authzcheck.Request{Method: strings.ToUpper(get("method")), Path: get("path"), Header: http.Header{}}
	if p := get("port"); p != "" {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil || n == 0 || n > 65535 {
			return nil, http.StatusBadRequest, fmt.Errorf("port %q: want a number from 1 to 65535", p)
		}
		req.Port = uint32(n)
	}
	for _, h := range q["header"] {
		k, v, ok := strings.Cut(h, "=")
		if !ok {
			k, v, ok = strings.Cut(h, ":")
		}
		if !ok || strings.TrimSpace(k) == "" {
			return nil, http.StatusBadRequest, fmt.Errorf("header %q: want name=value", h)
		}
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	auth, err := authzcheck.ParseToken(get("requestPrincipal"), q["claim"])
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	req.Auth = auth
	resp := &AuthzCheckResponse{From: from}
	if auth != nil {
		resp.RequestPrincipal = auth.Principal
	}
	td := snap.TrustDomain
	if td == "" {
		td = spiffeid.DefaultTrustDomain
	}
	switch {
	case from == "none":
	case strings.HasPrefix(from, "spiffe://"):
		id, err := spiffeid.Parse(from)
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("from %q: %w", from, err)
		}
		resp.FromPrincipal, resp.FromNamespace = id.String(), id.Namespace
	default:
		src := findInstances(maps.Values(snap.Instances), from, false)
		if len(src) == 0 {
			return nil, http.StatusNotFound, fmt.Errorf("from %q: no workload, service or instance of that name (give a SPIFFE ID, or none for a caller without a sidecar)", from)
		}
		sa := src[0].ServiceAccount
		if sa == "" {
			sa = "default"
		}
		id, err := spiffeid.New(td, src[0].Namespace, sa)
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("from %q: %w", from, err)
		}
		resp.FromPrincipal, resp.FromNamespace = id.String(), src[0].Namespace
	}
	req.Principal = resp.FromPrincipal
	dst := findInstances(maps.Values(snap.Instances), to, true)
	if len(dst) == 0 {
		return nil, http.StatusNotFound, fmt.Errorf("to %q: no service of that name with workloads in this mesh", to)
	}
	resp.To = model.FQDN(dst[0].Service, dst[0].Namespace)
	req.Host = resp.To
	resp.Decision = "ALLOW"
	seen := map[string]bool{}
	for _, inst := range dst {
		if seen[inst.Namespace+"/"+inst.Workload] {
			continue // replicas of a workload get the same config
		}
		seen[inst.Namespace+"/"+inst.Workload] = true
		res, err := authzcheck.Check(snap, inst, req)
		if err != nil {
			return nil, http.StatusBadRequest, err
		}
		if res.Decision == "DENY" {
			resp.Decision = "DENY"
		}
		resp.Results = append(resp.Results, res)
	}
	return resp, http.StatusOK, nil
}
