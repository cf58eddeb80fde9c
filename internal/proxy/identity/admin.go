package identity

import (
	"encoding/json"
	"net/http"
)

// CertsHandler serves the certificate in force as JSON (the admin API's
// /certs): SPIFFE ID, serial, validity, issuer, planned renewal, chain and
// trust bundle; never the key. Before the first certificate it answers
// 503.
func (c *Client) CertsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		info, ok := c.Info()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "no certificate yet for " + c.opts.ID.String() + ": waiting for " + c.sourceName()})
			return
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(info)
	})
}
