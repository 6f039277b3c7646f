// Package examples holds example signals for trying cascade; its test keeps them valid and
// keeps the files the documentation points at present in the repository.
package examples

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/tree"
	"github.com/layercake/cascade/producers"
)

// Every example line passes ingest and expands through the layers down to the grid.
func TestSignalsAreValid(t *testing.T) {
	body, err := os.ReadFile("signals.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	items, err := producers.Split(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) < 5 {
		t.Fatalf("%d example signals, want a handful", len(items))
	}
	coef := coefficients.Default()
	for _, it := range items {
		ev, err := producers.Prepare(it.Raw, event.DefaultScenario, time.Now())
		if err != nil {
			t.Fatalf("line %d: %v", it.Line, err)
		}
		p, err := event.DecodePayload(ev.Type, ev.Data)
		if err != nil {
			t.Fatalf("line %d: %v", it.Line, err)
		}
		n, err := tree.Expand(t.Context(), coef, ev, p)
		if err != nil {
			t.Fatalf("line %d: %v", it.Line, err)
		}
		if !reachesGrid(n) {
			t.Errorf("line %d (%s): its tree never reaches the grid", it.Line, ev.ID)
		}
	}
}

func reachesGrid(n *tree.Node) bool {
	if n.Event.Type == event.TypeDemandGrid {
		return true
	}
	for _, c := range n.Children {
		if reachesGrid(c) {
			return true
		}
	}
	return false
}

// repoPath matches a path into the repository (or beside it) named in prose or a link.
var repoPath = regexp.MustCompile(`(?:\.\./)?(?:shared|cmd|producers|consumers|schemas|deploy|internal|docs|examples|scripts)/[A-Za-z0-9_./-]*[A-Za-z0-9_]`)

// inputFile matches the input file of a README command that reads one.
var inputFile = regexp.MustCompile(`cascade (?:publish|calc|replay) (?:--[a-z-]+ )*([A-Za-z0-9_./-]+\.ndjson)`)

// The documents a newcomer reads point only at files a fresh clone has.
func TestDocumentedPathsExist(t *testing.T) {
	if _, err := os.Stat("../LICENSE"); err != nil {
		t.Error("no LICENSE file")
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range inputFile.FindAllStringSubmatch(string(readme), -1) {
		if _, err := os.Stat(filepath.Join("..", m[1])); err != nil {
			t.Errorf("README: `%s` reads %s, which a fresh clone does not have", m[0], m[1])
		}
	}
	docs := []string{"../README.md", "../docs/design.md", "README.md", "../internal/coefficients/default.yaml", "../internal/history/history.yaml", "../deploy/kafka/README.md"}
	for _, doc := range docs {
		body, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(doc, ".yaml") {
			body = comments(body) // only the prose: data values hold URLs with paths of their own
		}
		for _, p := range repoPath.FindAllString(string(body), -1) {
			p = strings.TrimRight(p, ".")
			if strings.Contains(p, "…") {
				continue
			}
			if _, err := os.Stat(filepath.Join("..", p)); err != nil {
				t.Errorf("%s names %s, which a fresh clone does not have", doc, p)
			}
		}
	}
}

// comments keeps the comment part of each YAML line.
func comments(body []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.Split(body, []byte("\n")) {
		if i := bytes.Index(line, []byte("# ")); i >= 0 && (i == 0 || line[i-1] == ' ') {
			out.Write(line[i:])
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}
