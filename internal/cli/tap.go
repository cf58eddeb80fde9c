package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"weft.dev/weft/internal/proxy/tap"
)

func newTapCmd(g *globals) *cobra.Command {
	var output, pathPrefix, method string
	var maxEvents int
	cmd := &cobra.Command{
		Use:   "tap SERVICE|WORKLOAD",
		Short: "Stream live request metadata from the sidecars of a service or workload",
		Long: `Stream the requests and TCP connections that the sidecars of a service or
workload see, as they finish: source and destination workload, method, path,
status, latency, response flags, request and trace IDs. The control plane opens
every matching sidecar's tap and merges them; nothing is restarted and nothing
needs SSH. Bodies are never captured and credential-like header values are
redacted. A sidecar that cannot keep up drops events (and says how many) rather
than slowing requests. Ctrl-C stops it. The target is a service, workload or
instance name, anywhere in the mesh, or NAME.NAMESPACE for one namespace's.

  weft tap reviews
  weft tap reviews.default
  weft tap productpage-v1 --path-prefix /api --method GET --max 20 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: want table or json", output)
			}
			if maxEvents < 0 {
				return fmt.Errorf("--max %d: want 0 (no limit) or more", maxEvents)
			}
			q := url.Values{"target": {args[0]}}
			if pathPrefix != "" {
				q.Set("path_prefix", pathPrefix)
			}
			if method != "" {
				q.Set("method", strings.ToUpper(method))
			}
			if maxEvents > 0 {
				q.Set("max", strconv.Itoa(maxEvents))
			}
			c := g.client()
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, c.base+"/api/v1/tap?"+q.Encode(), nil)
			if err != nil {
				return err
			}
			// No overall timeout: the stream lasts until --max or Ctrl-C.
			resp, err := (&http.Client{}).Do(req)
			if err != nil {
				if cmd.Context().Err() != nil {
					return nil
				}
				return fmt.Errorf("cannot reach the mesh's admin API at %s: %w (is 'weft up' running? pass --admin ADDR)", c.base, err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
				ae := &apiError{Status: resp.StatusCode}
				if json.Unmarshal(data, ae) != nil || ae.Message == "" {
					ae.Message = fmt.Sprintf("tap %s: %s: %s", args[0], resp.Status, strings.TrimSpace(string(data)))
				}
				return ae
			}
			err = printTap(resp.Body, g.stdout, g.stderr, output == "json", maxEvents)
			if cmd.Context().Err() != nil {
				return nil // Ctrl-C
			}
			return err
		},
	}
	cmd.Flags().StringVar(&pathPrefix, "path-prefix", "", "only HTTP requests whose path starts with this")
	cmd.Flags().StringVar(&method, "method", "", "only HTTP requests with this method")
	cmd.Flags().IntVar(&maxEvents, "max", 0, "exit after this many events (0: until Ctrl-C)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: table (one line per event) or json (one JSON object per line)")
	return cmd
}

// printTap copies a tap stream: raw NDJSON lines, or one readable line per
// event with notes on stderr. It returns after max events (0: at the
// stream's end).
func printTap(r io.Reader, stdout, stderr io.Writer, raw bool, max int) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		var e tap.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("reading the tap stream: %w", err)
		}
		if raw {
			fmt.Fprintf(stdout, "%s\n", sc.Bytes())
		} else if e.Kind == tap.KindNote {
			fmt.Fprintln(stderr, formatTapNote(&e))
		} else {
			fmt.Fprintln(stdout, formatTapEvent(&e))
			if e.Dropped > 0 {
				fmt.Fprintf(stderr, "(%s: %d events dropped before this one: the tap could not keep up)\n", e.Proxy, e.Dropped)
			}
		}
		if e.Kind != tap.KindNote {
			n++
			if max > 0 && n >= max {
				return nil
			}
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("reading the tap stream: %w", err)
	}
	return nil
}

// formatTapEvent is one readable line:
//
//	15:04:05.000 productpage-v1 -> reviews-v2 GET /reviews/0 200 3.1ms flags=- req=<id>
func formatTapEvent(e *tap.Event) string {
	var b strings.Builder
	b.WriteString(e.Time.Local().Format("15:04:05.000"))
	b.WriteByte(' ')
	b.WriteString(endName(e.Source))
	b.WriteString(" -> ")
	b.WriteString(endName(e.Destination))
	if e.Kind == tap.KindTCP {
		fmt.Fprintf(&b, " TCP %s sent=%dB received=%dB", dash(e.Authority), e.BytesSent, e.BytesReceived)
	} else {
		fmt.Fprintf(&b, " %s %s %d", e.Method, e.Path, e.Status)
		if e.GRPCStatus != "" {
			fmt.Fprintf(&b, " grpc=%s", e.GRPCStatus)
		}
	}
	fmt.Fprintf(&b, " %s flags=%s", formatMs(e.DurationMs), dash(e.ResponseFlags))
	if e.RequestID != "" {
		b.WriteString(" req=")
		b.WriteString(e.RequestID)
	}
	if e.TraceID != "" {
		b.WriteString(" trace=")
		b.WriteString(e.TraceID)
	}
	return b.String()
}

func formatTapNote(e *tap.Event) string {
	var parts []string
	if e.Proxy != "" {
		parts = append(parts, e.Proxy+":")
	}
	if e.Note != "" {
		parts = append(parts, e.Note)
	}
	if e.Dropped > 0 {
		parts = append(parts, fmt.Sprintf("(%d events dropped: the tap could not keep up)", e.Dropped))
	}
	if e.Error != "" {
		parts = append(parts, e.Error)
	}
	return "note: " + strings.Join(parts, " ")
}

func endName(ep *tap.Endpoint) string {
	if ep == nil || ep.Workload == "" {
		return tap.Unknown
	}
	return ep.Workload
}

// formatMs prints a duration given in milliseconds: 0.4ms, 3.1ms, 1.25s.
func formatMs(ms float64) string {
	if ms >= 1000 {
		return strconv.FormatFloat(ms/1000, 'f', 2, 64) + "s"
	}
	return strconv.FormatFloat(ms, 'f', 1, 64) + "ms"
}
