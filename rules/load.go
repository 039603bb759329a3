package rules

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vigil-k8s/vigil/internal/metrics"
)

//go:embed default/*.yaml default/testdata
var defaultPack embed.FS

// LoadOptions says which rule files to load together.
type LoadOptions struct {
	// Paths are rule files or folders; folders are searched recursively for
	// *.yaml and *.yml files.
	Paths []string
	// Default adds the embedded default rule pack.
	Default bool
	// Limits bound what one evaluation may cost; zero: the defaults.
	Limits Limits
	// Metrics counts each request or response object over
	// Limits.ObjectBytes that a rule wanted, which then read as absent
	// (vigil_limit_exceeded_total{limit="max_object_bytes"}); nil counts
	// nowhere.
	Metrics *metrics.Metrics
}

// Load reads, parses and compiles rule files. Any problem in any file
// rejects the whole load with a *Problems listing all of them.
func Load(opts LoadOptions) (*Set, error) {
	var probs Problems
	var files []File
	if opts.Default {
		d, err := defaultFiles()
		if err != nil {
			return nil, err
		}
		files = append(files, d...)
	}
	for _, p := range opts.Paths {
		found, err := diskFiles(p)
		if err != nil {
			probs.Add(Problem{File: p, Message: err.Error()})
			continue
		}
		files = append(files, found...)
	}
	if err := probs.Err(); err != nil {
		return nil, err
	}
	return build(files, opts.Limits, opts.Metrics)
}

// File is one rule file's name and content.
type File struct {
	Name string
	Data []byte
	// ReadFile resolves paths a test names (events_file); nil forbids them.
	ReadFile func(rel string) ([]byte, error)
}

// DefaultPack is the embedded default rule pack: its rule files and the
// testdata their tests read, laid out so that the folder loads and tests
// as it is.
func DefaultPack() fs.FS {
	sub, err := fs.Sub(defaultPack, "default")
	if err != nil {
		panic(err) // "default" is a valid path: a defect
	}
	return sub
}

func defaultFiles() ([]File, error) {
	names, err := fs.Glob(defaultPack, "default/*.yaml")
	if err != nil {
		return nil, fmt.Errorf("default rule pack: %w", err)
	}
	var out []File
	for _, n := range names {
		data, err := defaultPack.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("default rule pack: %w", err)
		}
		out = append(out, File{
			Name: "rules/" + n,
			Data: data,
			ReadFile: func(rel string) ([]byte, error) {
				return defaultPack.ReadFile(path.Join("default", rel))
			},
		})
	}
	return out, nil
}

// Files lists the rule files in folder p, recursively: *.yaml and *.yml,
// sorted. Hidden folders are skipped: the kubelet mounts a ConfigMap as
// links into a "..<timestamp>" folder, which would otherwise load every
// file twice.
func Files(p string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(p, func(fp string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && fp != p && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if ext := filepath.Ext(fp); !d.IsDir() && (ext == ".yaml" || ext == ".yml") {
			files = append(files, fp)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read rules folder: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no *.yaml or *.yml rule files in folder")
	}
	sort.Strings(files)
	return files, nil
}

func diskFiles(p string) ([]File, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("cannot read rules: %w", err)
	}
	files := []string{p}
	if st.IsDir() {
		if files, err = Files(p); err != nil {
			return nil, err
		}
	}
	sort.Strings(files)
	out := make([]File, 0, len(files))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("cannot read rules: %w", err)
		}
		dir := filepath.Dir(f)
		out = append(out, File{
			Name: f,
			Data: data,
			ReadFile: func(rel string) ([]byte, error) {
				if !filepath.IsAbs(rel) {
					rel = filepath.Join(dir, rel)
				}
				return os.ReadFile(rel)
			},
		})
	}
	return out, nil
}

// Compile parses and compiles rule files loaded together: their lists and
// macros are shared, rule ids must be unique across them.
func Compile(files []File) (*Set, error) {
	return CompileWith(files, Limits{})
}

// CompileWith is Compile with limits other than the defaults.
func CompileWith(files []File, limits Limits) (*Set, error) {
	return build(files, limits, nil)
}

func hashFiles(files []File) string {
	sums := make([]string, len(files))
	for i, f := range files {
		s := sha256.Sum256(f.Data)
		sums[i] = hex.EncodeToString(s[:])
	}
	sort.Strings(sums)
	h := sha256.New()
	for _, s := range sums {
		h.Write([]byte(s))
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
