package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"weft.dev/weft/internal/ca"
	"weft.dev/weft/internal/caapi"
)

// CAOptions configure the control plane's certificate authority, served
// over TLS on Options.CAAddr (Istio's 15012). With neither Dir nor
// PluginDir set the CA is off.
type CAOptions struct {
	// Dir keeps the self-signed root (root-cert.pem, root-key.pem mode
	// 0600), created on first start; weft up uses <state-dir>/ca.
	Dir string
	// PluginDir, when set, holds a plug-in CA in Istio's cacerts layout
	// (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem) used instead
	// of the self-signed root.
	PluginDir string
	// TrustDomain of workload SPIFFE IDs; default cluster.local.
	TrustDomain string
	// LeafTTL is the lifetime of workload certificates; default 24 h.
	LeafTTL time.Duration
	// SPIFFESocket, when set, is the SPIFFE Workload API (a SPIRE agent,
	// unix:///path/agent.sock) that issues the sidecars' certificates
	// instead of the CA: the CA port then also trusts client
	// certificates from that trust domain's bundle, which the control
	// plane reads from the Workload API as a workload of its own (it
	// needs a registration entry). The CA still signs the port's own TLS
	// certificate, so Dir or PluginDir is needed too.
	SPIFFESocket string
}

// caExpiryCheck is how often the CA re-checks its roots and intermediates
// for coming expiry.
const caExpiryCheck = 12 * time.Hour

// setupCA loads or creates the CA and binds its port; a no-op when the
// CA is off.
func (s *Server) setupCA() error {
	o := s.opts.CA
	if o.Dir == "" && o.PluginDir == "" {
		_, err := newSPIFFETrust(o, s.opts.Logger) // refuses a socket without a CA
		return err
	}
	if s.opts.CAAddr == "" {
		s.opts.CAAddr = "127.0.0.1:15012"
	}
	a, err := ca.New(ca.Options{Dir: o.Dir, PluginDir: o.PluginDir, TrustDomain: o.TrustDomain, LeafTTL: o.LeafTTL, Logger: s.opts.Logger, Registerer: s.reg})
	if err != nil {
		return err
	}
	if s.spiffe, err = newSPIFFETrust(o, s.opts.Logger); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.opts.CAAddr)
	if err != nil {
		return fmt.Errorf("listening for the CA on %s: %w (is another control plane running? pass --ca-addr)", s.opts.CAAddr, err)
	}
	s.ca, s.caTokens, s.caLn = a, ca.NewTokens(), ln
	return nil
}

// CA is the certificate authority, or nil when it is off.
func (s *Server) CA() *ca.Authority { return s.ca }

// CATokens are the bootstrap tokens the CA accepts (local mode: weft up
// issues one per instance); nil when the CA is off.
func (s *Server) CATokens() *ca.Tokens { return s.caTokens }

// IdentityStatus says where the sidecars' certificates come from.
func (s *Server) IdentityStatus() IdentityStatus {
	if s.spiffe != nil {
		return s.spiffe.status()
	}
	return IdentityStatus{Source: IdentitySourceCA}
}

// SPIFFESocket is the SPIFFE Workload API that issues the sidecars'
// certificates, or "" when the built-in CA does.
func (s *Server) SPIFFESocket() string {
	if s.spiffe == nil {
		return ""
	}
	return s.spiffe.addr
}

// CAAddr is the address the CA is served on, or "" when it is off.
func (s *Server) CAAddr() string {
	if s.caLn == nil {
		return ""
	}
	return s.caLn.Addr().String()
}

func (s *Server) caRoutes() {
	s.mux.HandleFunc("GET /api/v1/ca", func(w http.ResponseWriter, r *http.Request) {
		if s.ca == nil {
			writeJSON(w, http.StatusNotFound, errorBody{Error: "the control plane runs no CA: start it with a CA folder (weft up always does)"})
			return
		}
		writeJSON(w, http.StatusOK, CAStatus{Status: s.ca.StatusFor(s.caTokens.Instances()), Identity: s.IdentityStatus()})
	})
	// POST /api/v1/ca/rotate {"step": "stage" | "issue-from-new" |
	// "retire-old"}: one step of a root rotation; 409 with the reason when
	// the step is refused.
	s.mux.HandleFunc("POST /api/v1/ca/rotate", func(w http.ResponseWriter, r *http.Request) {
		if s.ca == nil {
			writeJSON(w, http.StatusNotFound, errorBody{Error: "the control plane runs no CA"})
			return
		}
		var body struct {
			Step string `json:"step"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body); err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "want a JSON body {\"step\": \"stage\" | \"issue-from-new\" | \"retire-old\"}: " + err.Error()})
			return
		}
		st, err := s.ca.Rotate(body.Step, s.caTokens.Instances())
		var refused *ca.RefusedError
		switch {
		case errors.As(err, &refused):
			writeJSON(w, http.StatusConflict, errorBody{Error: refused.Msg})
		case err != nil:
			writeJSON(w, http.StatusInternalServerError, errorBody{Error: err.Error()})
		default:
			writeJSON(w, http.StatusOK, st)
		}
	})
}

// runSPIFFE follows the SPIFFE Workload API's trust bundle until ctx
// ends; it returns at once when the mesh's identities come from the CA.
func (s *Server) runSPIFFE(ctx context.Context) error {
	if s.spiffe == nil {
		return nil
	}
	return s.spiffe.run(ctx)
}

// runCA serves the certificate API until ctx ends and re-checks the CA's
// expiry now and then; it returns at once when the CA is off.
func (s *Server) runCA(ctx context.Context) error {
	if s.ca == nil {
		return nil
	}
	tlsCfg := s.ca.ServerTLSConfig()
	if s.spiffe != nil {
		tlsCfg = s.spiffe.withSPIFFERoots(tlsCfg)
	}
	unary, stream := ca.RequireClientCert()
	srv := grpc.NewServer(append(s.xds.ServerOptions(),
		grpc.Creds(credentials.NewTLS(tlsCfg)),
		grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 15 * time.Second, PermitWithoutStream: true}),
	)...)
	caapi.Register(srv, ca.NewService(s.ca, s.caTokens))
	// xDS over mTLS for sidecars: the same ADS server as the plaintext
	// port, for callers whose SVID verified (RequireClientCert).
	s.xds.Register(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(s.caLn) }()
	s.log.Info("CA serving", "addr", s.CAAddr(), "trust_domain", s.ca.TrustDomain(), "leaf_lifetime", s.ca.LeafTTL())
	tick := time.NewTicker(caExpiryCheck)
	defer tick.Stop()
	for {
		select {
		case err := <-served:
			if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				return fmt.Errorf("serving the CA: %w", err)
			}
			return nil
		case <-tick.C:
			s.ca.CheckExpiry(time.Now())
		case <-ctx.Done():
			stopped := make(chan struct{})
			go func() { srv.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(2 * time.Second):
				srv.Stop()
			}
			<-served
			return nil
		}
	}
}
