// Package cli holds the weft command and its subcommands.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"weft.dev/weft/internal/version"
)

// Main runs the weft command line and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(stderr, "weft:", ee.msg)
			}
			return ee.code
		}
		fmt.Fprintln(stderr, "weft:", err)
		return 1
	}
	return 0
}

// exitError ends the command with a given code; msg may be empty when the
// command has already said what went wrong.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// globals are the flags every command shares.
type globals struct {
	admin    string
	stateDir string
	logLevel string
	stdout   io.Writer
	stderr   io.Writer
}

func (g *globals) logger() *slog.Logger {
	lvl := slog.LevelInfo
	_ = lvl.UnmarshalText([]byte(g.logLevel))
	return slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: lvl}))
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "weft",
		Short: "Weft is a service mesh: traffic control, identity and telemetry for every service",
		Long: `Weft is a service mesh. It puts a lean proxy beside every workload and
configures them all from Istio's API, so traffic can be routed, secured and
observed without changing the services.

Start with 'weft up' to run the built-in demo mesh on this machine.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Version,
	}
	root.PersistentFlags().StringVar(&g.admin, "admin", "", "admin API address of a running mesh (default: read from the state dir, else 127.0.0.1:15014)")
	root.PersistentFlags().StringVar(&g.stateDir, "state-dir", defaultStateDir(), "folder where weft up keeps its state (config, logs, addresses)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(
		newUpCmd(g),
		newControlPlaneCmd(g),
		newProxyCmd(g),
		newAnalyzeCmd(g),
		newApplyCmd(g),
		newGetCmd(g),
		newDeleteCmd(g),
		newStatusCmd(g),
		newProxyStatusCmd(g),
		newProxyConfigCmd(g),
		newStatCmd(g),
		newCACmd(g),
		newTapCmd(g),
		newAuthzCmd(g),
		newLogsCmd(g),
		newDemoAppCmd(g),
	)
	return root
}

// defaultStateDir is $WEFT_STATE_DIR, else $XDG_STATE_HOME/weft, else
// ~/.local/state/weft.
func defaultStateDir() string {
	if d := os.Getenv("WEFT_STATE_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return d + "/weft"
	}
	if h, err := os.UserHomeDir(); err == nil {
		return h + "/.local/state/weft"
	}
	return ".weft"
}
