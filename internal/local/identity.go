package local

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"weft.dev/weft/internal/controlplane"
	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/spiffeid"
)

// caSettings picks the CA's address (a free port if the preferred one is
// taken) and its folder, <state-dir>/ca.
func caSettings(opts Options, stateDir string, pp *ports, log *slog.Logger) (string, controlplane.CAOptions) {
	want := opts.CAAddr
	if want == "" {
		want = "127.0.0.1:15012"
	}
	addr, ok := pp.preferred(want)
	if !ok {
		log.Warn("CA port taken; using another", "wanted", want, "using", addr)
	}
	return addr, controlplane.CAOptions{
		Dir:          filepath.Join(stateDir, "ca"),
		PluginDir:    opts.CACerts,
		TrustDomain:  opts.TrustDomain,
		LeafTTL:      opts.CertTTL,
		SPIFFESocket: opts.SPIFFESocket,
	}
}

// tokenDir holds the instances' bootstrap tokens (0700; files 0600).
func (m *mesh) tokenDir() string { return filepath.Join(m.stateDir, "tokens") }

func (m *mesh) tokenFile(mi *model.Instance) string {
	return filepath.Join(m.tokenDir(), mi.ProxyKey()+".token")
}

// identityArgs returns the sidecar flags that give it its certificate.
// With the built-in CA it issues the instance a bootstrap token and
// writes it to a 0600 file; with the SPIFFE Workload API the sidecar asks
// the agent (which attests it by its path, spiffeProxyPath). Either way
// xDS runs over mTLS on the CA port, whose certificate the sidecar
// verifies with the CA's trust bundle file. Without a CA, or if the token
// cannot be written, the sidecar runs without identity (logged).
func (m *mesh) identityArgs(mi *model.Instance) []string {
	a, tokens := m.cp.CA(), m.cp.CATokens()
	if a == nil {
		return nil
	}
	id, err := spiffeid.New(a.TrustDomain(), mi.Namespace, mi.ServiceAccount)
	if err != nil {
		m.log.Warn("instance gets no workload certificate", "instance", mi.ProxyKey(), "err", err)
		return nil
	}
	if sock := m.cp.SPIFFESocket(); sock != "" {
		return []string{
			"--identity-source", "spiffe",
			"--spiffe-socket", sock,
			"--ca-addr", m.cp.CAAddr(),
			"--ca-root-file", a.TrustBundleFile(),
			"--trust-domain", a.TrustDomain(),
		}
	}
	tok, err := tokens.Issue(mi.ProxyKey(), id)
	if err == nil {
		err = writeToken(m.tokenDir(), m.tokenFile(mi), tok)
	}
	if err != nil {
		tokens.Revoke(mi.ProxyKey())
		m.log.Warn("instance gets no workload certificate", "instance", mi.ProxyKey(), "err", err)
		return nil
	}
	return []string{
		"--ca-addr", m.cp.CAAddr(),
		"--ca-root-file", a.TrustBundleFile(),
		"--bootstrap-token-file", m.tokenFile(mi),
		"--trust-domain", a.TrustDomain(),
	}
}

// revokeIdentity makes a stopped instance's token useless and removes it.
func (m *mesh) revokeIdentity(mi *model.Instance) {
	if tokens := m.cp.CATokens(); tokens != nil {
		tokens.Revoke(mi.ProxyKey())
		_ = os.Remove(m.tokenFile(mi))
	}
}

func writeToken(dir, path, tok string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating the token folder: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing the bootstrap token: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// spiffeProxyPath is where the sidecars of an identity run from when the
// SPIFFE Workload API issues their certificates: one path per namespace
// and service account, <state-dir>/spiffe/<ns>/<sa>/<program>, a hard
// link to (or copy of) the proxy program, so that a SPIRE agent's unix
// workload attestor with discover_workload_path tells identities apart by
// the selector unix:path:<that path>. It is laid anew at every start, so
// it runs the program of the moment.
func (m *mesh) spiffeProxyPath(mi *model.Instance, program string) (string, error) {
	dst := filepath.Join(m.stateDir, "spiffe", mi.Namespace, mi.ServiceAccount, filepath.Base(program))
	m.spiffeMu.Lock()
	defer m.spiffeMu.Unlock()
	if m.spiffeLaid[dst] {
		return dst, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	if err := os.Remove(dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err := os.Link(program, dst); err != nil {
		if err := copyExecutable(program, dst); err != nil {
			return "", fmt.Errorf("laying out %s for the SPIRE agent: %w", dst, err)
		}
	}
	if m.spiffeLaid == nil {
		m.spiffeLaid = map[string]bool{}
	}
	m.spiffeLaid[dst] = true
	id, _ := spiffeid.New(m.cp.CA().TrustDomain(), mi.Namespace, mi.ServiceAccount)
	m.log.Info("sidecars of this identity run from their own path; register it with SPIRE",
		"spiffe_id", id.String(), "selector", "unix:path:"+dst,
		"command", "spire-server entry create -parentID <agent SPIFFE ID> -spiffeID "+id.String()+" -selector unix:path:"+dst)
	return dst, nil
}

func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
