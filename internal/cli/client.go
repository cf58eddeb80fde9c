package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"weft.dev/weft/internal/local"
)

// client talks to the admin API of a running control plane.
type client struct {
	base string
	http *http.Client
}

func (g *globals) client() *client {
	addr := g.admin
	if addr == "" {
		addr = os.Getenv("WEFT_ADMIN")
	}
	if addr == "" {
		if st, err := local.ReadState(g.stateDir); err == nil && st.Admin != "" {
			addr = st.Admin
		}
	}
	if addr == "" {
		addr = "127.0.0.1:15014"
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &client{base: strings.TrimSuffix(addr, "/"), http: &http.Client{Timeout: 30 * time.Second}}
}

// apiError is an error answer of the admin API.
type apiError struct {
	Status   int
	Message  string   `json:"error"`
	Findings []string `json:"findings"`
}

func (e *apiError) Error() string {
	var b strings.Builder
	b.WriteString(e.Message)
	for _, f := range e.Findings {
		b.WriteString("\n  ")
		b.WriteString(f)
	}
	return b.String()
}

func (c *client) do(method, path string, body []byte, out any) error {
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/yaml")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the mesh's admin API at %s: %w (is 'weft up' running? pass --admin ADDR)", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		ae := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(data, ae) != nil || ae.Message == "" {
			ae.Message = fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(data)))
		}
		return ae
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return nil
	}
	return json.Unmarshal(data, out)
}

// readInput reads a file argument, or standard input for "-".
func readInput(path string, stdin io.Reader) ([]byte, string, error) {
	if path == "-" {
		data, err := io.ReadAll(stdin)
		return data, "<stdin>", err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	return data, abs, nil
}
