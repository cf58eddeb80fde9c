package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"
)

// fileCertCheck is how often a certificate read from files is checked
// for a change of its files.
const fileCertCheck = time.Second

// fileCert is a certificate and key read from PEM files (a gateway's
// HTTPS server, a DestinationRule's client certificate), read again when
// either file changes, so certificates renewed in place are served
// without a config change. A change that does not load (a certificate
// written before its key) keeps the certificate served until both load.
type fileCert struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]fileStamp
	checked time.Time
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(name string) fileStamp {
	fi, err := os.Stat(name)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{fi.ModTime(), fi.Size()}
}

// loadFileCert reads the pair; an error when it does not load.
func loadFileCert(certFile, keyFile string) (*fileCert, error) {
	f := &fileCert{certFile: certFile, keyFile: keyFile}
	f.stamp = [2]fileStamp{stampOf(certFile), stampOf(keyFile)}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	f.cert, f.checked = &cert, time.Now()
	return f, nil
}

// current returns the certificate, read again first when a file changed
// since the last check (at most once per fileCertCheck).
func (f *fileCert) current() *tls.Certificate {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now := time.Now(); now.Sub(f.checked) >= fileCertCheck {
		f.checked = now
		if st := [2]fileStamp{stampOf(f.certFile), stampOf(f.keyFile)}; st != f.stamp {
			if cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile); err == nil {
				f.cert, f.stamp = &cert, st
			}
		}
	}
	return f.cert
}

func (f *fileCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.current(), nil
}

func (f *fileCert) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return f.current(), nil
}

// fileRoots is a pool of CA certificates read from a PEM file (a
// gateway's caCertificates, a DestinationRule's), read again when the
// file changes, as fileCert is; a change that does not load keeps the
// pool in use.
type fileRoots struct {
	name string

	mu      sync.Mutex
	pool    *x509.CertPool
	stamp   fileStamp
	checked time.Time
}

func readRoots(name string) (*x509.CertPool, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("trusted CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("trusted CA %s: no PEM certificates", name)
	}
	return pool, nil
}

// loadFileRoots reads the file; an error when it does not load.
func loadFileRoots(name string) (*fileRoots, error) {
	f := &fileRoots{name: name, stamp: stampOf(name)}
	pool, err := readRoots(name)
	if err != nil {
		return nil, err
	}
	f.pool, f.checked = pool, time.Now()
	return f, nil
}

// current returns the pool, read again first when the file changed since
// the last check (at most once per fileCertCheck).
func (f *fileRoots) current() *x509.CertPool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now := time.Now(); now.Sub(f.checked) >= fileCertCheck {
		f.checked = now
		if st := stampOf(f.name); st != f.stamp {
			if pool, err := readRoots(f.name); err == nil {
				f.pool, f.stamp = pool, st
			}
		}
	}
	return f.pool
}
