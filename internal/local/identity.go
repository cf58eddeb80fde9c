package local

import (
	"fmt"
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
		Dir:         filepath.Join(stateDir, "ca"),
		PluginDir:   opts.CACerts,
		TrustDomain: opts.TrustDomain,
		LeafTTL:     opts.CertTTL,
	}
}

// tokenDir holds the instances' bootstrap tokens (0700; files 0600).
func (m *mesh) tokenDir() string { return filepath.Join(m.stateDir, "tokens") }

func (m *mesh) tokenFile(mi *model.Instance) string {
	return filepath.Join(m.tokenDir(), mi.ProxyKey()+".token")
}

// identityArgs issues the instance a bootstrap token, writes it to a 0600
// file, and returns the sidecar flags that make it get its certificate
// from the CA. Without a CA, or if the token cannot be written, the
// sidecar runs without identity (logged).
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
