package controlplane

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"weft.dev/weft/internal/model"
)

// doc is one YAML document of the config folder, kept as text so that
// rewriting a file for `weft apply` or `weft delete` leaves every other
// document exactly as its author wrote it.
type doc struct {
	// File the document is in.
	File string
	// Text of the document, without its "---" separator line.
	Text string
	// Kind, Namespace and Name identify the resource; Namespace defaults
	// to "default".
	Kind, Namespace, Name string
	// Start is the index of the document's first line in File, and Lines
	// its number of lines.
	Start, Lines int
}

func (d doc) key() string { return resourceKey(d.Kind, d.Namespace, d.Name) }

func resourceKey(kind, ns, name string) string {
	return strings.ToLower(kind) + "/" + ns + "/" + name
}

// docText is one document's text and where it starts.
type docText struct {
	text         string
	start, lines int
}

// splitDocs splits YAML text at "---" lines. Empty documents are dropped.
func splitDocs(text string) []docText {
	var out []docText
	var cur strings.Builder
	start, n, i := 0, 0, 0
	flush := func() {
		if strings.TrimSpace(stripComments(cur.String())) != "" {
			out = append(out, docText{text: cur.String(), start: start, lines: n})
		}
		cur.Reset()
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	for ; sc.Scan(); i++ {
		line := sc.Text()
		if strings.HasPrefix(line, "---") && strings.TrimSpace(strings.TrimPrefix(line, "---")) == "" {
			flush()
			start, n = i+1, 0
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		n++
	}
	flush()
	return out
}

// blankDocs returns text with the lines of the given documents turned into
// comments, so every other line keeps its number.
func blankDocs(text string, docs []doc) string {
	lines := strings.Split(text, "\n")
	for _, d := range docs {
		for i := d.Start; i < d.Start+d.Lines && i < len(lines); i++ {
			lines[i] = "#"
		}
	}
	return strings.Join(lines, "\n")
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// parseDocs splits text into documents and reads each one's identity.
func parseDocs(file, text string) ([]doc, error) {
	var out []doc
	for i, dt := range splitDocs(text) {
		t := dt.text
		var head struct {
			Kind     string `yaml:"kind"`
			Metadata struct {
				Name      string `yaml:"name"`
				Namespace string `yaml:"namespace"`
			} `yaml:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(t), &head); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", file, i+1, err)
		}
		if head.Kind == "" || head.Metadata.Name == "" {
			return nil, fmt.Errorf("%s: document %d: kind and metadata.name are required", file, i+1)
		}
		if head.Metadata.Namespace == "" {
			head.Metadata.Namespace = model.DefaultNamespace
		}
		out = append(out, doc{File: file, Text: t, Kind: head.Kind, Namespace: head.Metadata.Namespace, Name: head.Metadata.Name, Start: dt.start, Lines: dt.lines})
	}
	return out, nil
}

// scanFolder reads every document of every YAML file under dir. Files that
// do not parse are skipped here: validation reports them.
func scanFolder(dir string) (map[string][]doc, error) {
	files := map[string][]doc{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !isConfigFile(path) {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		docs, err := parseDocs(path, string(data))
		if err != nil {
			docs = nil
		}
		files[path] = docs
		return nil
	})
	return files, err
}

// folderEdit is a set of changes to the config folder: resources put
// (created or replaced) and resources deleted, by key.
type folderEdit struct {
	put    []doc
	delete map[string]bool
}

// plan computes the new contents of every file the edit touches. A put of a
// resource that already exists replaces its document in place; a new one
// gets a file of its own. A file left with no document is removed (nil).
func (e folderEdit) plan(dir string, files map[string][]doc) (map[string]*string, []string, error) {
	where := map[string]string{}
	for f, docs := range files {
		for _, d := range docs {
			where[d.key()] = f
		}
	}
	newDocs := map[string][]doc{}
	for f, docs := range files {
		newDocs[f] = append([]doc(nil), docs...)
	}
	touched := map[string]bool{}
	var missing []string
	for k := range e.delete {
		f, ok := where[k]
		if !ok {
			missing = append(missing, k)
			continue
		}
		kept := newDocs[f][:0]
		for _, d := range newDocs[f] {
			if d.key() != k {
				kept = append(kept, d)
			}
		}
		newDocs[f] = kept
		touched[f] = true
	}
	for _, d := range e.put {
		if f, ok := where[d.key()]; ok {
			for i := range newDocs[f] {
				if newDocs[f][i].key() == d.key() {
					d.File = f
					newDocs[f][i] = d
				}
			}
			touched[f] = true
			continue
		}
		f := filepath.Join(dir, fmt.Sprintf("%s-%s-%s.yaml", strings.ToLower(d.Kind), d.Namespace, d.Name))
		// If the file already holds other resources, the document joins them.
		newDocs[f] = append(newDocs[f], d)
		where[d.key()] = f
		touched[f] = true
	}
	out := map[string]*string{}
	for f := range touched {
		if len(newDocs[f]) == 0 {
			out[f] = nil
			continue
		}
		var b strings.Builder
		for i, d := range newDocs[f] {
			if i > 0 {
				b.WriteString("---\n")
			}
			b.WriteString(d.Text)
		}
		s := b.String()
		out[f] = &s
	}
	sort.Strings(missing)
	return out, missing, nil
}

// writeAtomic replaces path with data through a rename, so the watcher never
// reads half a file.
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".weft-apply-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}
