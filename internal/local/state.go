package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// State is what a running `weft up` writes to <state-dir>/mesh.json so
// that other commands (weft status, apply, get...) can find it.
type State struct {
	// PID of the weft up process.
	PID int `json:"pid"`
	// Admin is the control plane's admin API address.
	Admin string `json:"admin"`
	// XDS is the control plane's xDS address.
	XDS string `json:"xds"`
	// ConfigDir is the watched config folder.
	ConfigDir string `json:"configDir"`
	// Ingress lists the gateway URLs.
	Ingress []string `json:"ingress,omitempty"`
}

const stateFile = "mesh.json"

// ReadState reads the state of the mesh running from stateDir.
func ReadState(stateDir string) (State, error) {
	var st State
	data, err := os.ReadFile(filepath.Join(stateDir, stateFile))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("reading %s: %w", filepath.Join(stateDir, stateFile), err)
	}
	return st, nil
}

func writeState(stateDir string, st State) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(stateDir, stateFile), data)
}

// ports hands out free loopback ports, never the same one twice in a run.
type ports struct {
	mu   sync.Mutex
	used map[int]bool
}

func newPorts() *ports { return &ports{used: map[int]bool{}} }

// free returns a loopback port that was free when asked.
func (p *ports) free() (uint32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("finding a free port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !p.used[port] {
			p.used[port] = true
			return uint32(port), nil
		}
	}
	return 0, errors.New("finding a free port: none left")
}

// preferred returns addr if its port is free, else a free port on the
// same host, so a mesh starts even when the usual port is taken.
func (p *ports) preferred(addr string) (string, bool) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		ln.Close()
		return addr, true
	}
	host, _, _ := net.SplitHostPort(addr)
	if host == "" {
		host = "127.0.0.1"
	}
	port, err := p.free()
	if err != nil {
		return addr, false
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port))), false
}
