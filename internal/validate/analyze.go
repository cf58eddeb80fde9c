package validate

import (
	"fmt"
	"io"
	"sort"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
)

// Analyze is `weft analyze PATH...`: it loads the files and folders at
// paths, builds a snapshot as the control plane would with no running
// instances and no history, and writes every finding to w, one line each
// ("file:line: Kind ns/name: field: message", warnings suffixed
// "(warning)"), sorted by file, then line. It writes nothing when there is
// no finding. It returns 1 if any finding is an error, else 0 (warnings
// alone do not fail).
//
// Without instances, services declared by Workloads have no endpoints;
// checks that need endpoints are left to the running control plane.
func Analyze(w io.Writer, paths []string) int {
	set, _ := config.Load(paths...)
	snap := NewBuilder().Build(set, nil)
	fs := Findings(snap)
	for _, f := range fs {
		fmt.Fprintln(w, f.String())
	}
	if hasError(fs) {
		return 1
	}
	return 0
}

// Findings returns every finding of a snapshot's status, sorted by file,
// line, then the finding's text.
func Findings(snap *model.Snapshot) []model.Finding {
	var out []model.Finding
	for _, st := range snap.Status {
		out = append(out, st.Findings...)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Meta.File != b.Meta.File {
			return a.Meta.File < b.Meta.File
		}
		la, lb := lineOf(a), lineOf(b)
		if la != lb {
			return la < lb
		}
		return a.String() < b.String()
	})
	return out
}

func lineOf(f model.Finding) int {
	if f.Line != 0 {
		return f.Line
	}
	return f.Meta.Line
}
