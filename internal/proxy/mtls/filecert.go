package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"
)

// fileCheck is how often a value read from files is checked for a change
// of its files.
const fileCheck = time.Second

// fromFiles is a value read from files: a certificate and key (a
// gateway's HTTPS server, a DestinationRule's client certificate) or a
// pool of CA certificates (caCertificates). It is read again when one of
// its files changes (checked at most once per fileCheck, when the value
// is asked for), so files renewed in place are served without a config
// change. A change that does not load (a certificate written before its
// key) keeps the value in use until it does.
type fromFiles[T any] struct {
	files []string
	load  func() (T, error)

	mu      sync.Mutex
	v       T
	stamps  []fileStamp
	checked time.Time
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stampsOf(names []string) []fileStamp {
	out := make([]fileStamp, len(names))
	for i, n := range names {
		if fi, err := os.Stat(n); err == nil {
			out[i] = fileStamp{fi.ModTime(), fi.Size()}
		}
	}
	return out
}

// readFiles loads the value; an error when it does not load.
func readFiles[T any](load func() (T, error), files ...string) (*fromFiles[T], error) {
	f := &fromFiles[T]{files: files, load: load, stamps: stampsOf(files)}
	v, err := load()
	if err != nil {
		return nil, err
	}
	f.v, f.checked = v, time.Now()
	return f, nil
}

// current returns the value, read again first when a file changed since
// the last check.
func (f *fromFiles[T]) current() T {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now := time.Now(); now.Sub(f.checked) >= fileCheck {
		f.checked = now
		if st := stampsOf(f.files); !slices.Equal(st, f.stamps) {
			if v, err := f.load(); err == nil {
				f.v, f.stamps = v, st
			}
		}
	}
	return f.v
}

// loadFileCert reads a PEM certificate chain and its key.
func loadFileCert(certFile, keyFile string) (*fromFiles[*tls.Certificate], error) {
	return readFiles(func() (*tls.Certificate, error) {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		return &cert, err
	}, certFile, keyFile)
}

// loadFileRoots reads a PEM file of CA certificates.
func loadFileRoots(name string) (*fromFiles[*x509.CertPool], error) {
	return readFiles(func() (*x509.CertPool, error) {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("trusted CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("trusted CA %s: no PEM certificates", name)
		}
		return pool, nil
	}, name)
}
