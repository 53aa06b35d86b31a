package devstack

import (
	"embed"
	"io/fs"
	"os"
	"path/filepath"
)

// Pod annotations that steer kwok's simulated containers (see kwok/*.yaml).
const (
	// AnnotationResult becomes the termination message of every container
	// of a finishing Pod — the result channel tests can read.
	AnnotationResult = "kwok.airlock.dev/result"
	// AnnotationFail "true" makes a Pod fail (exit code 1, reason Error)
	// instead of succeed.
	AnnotationFail = "kwok.airlock.dev/fail"
	// AnnotationDurationMS keeps a Pod Running this many milliseconds
	// before it succeeds or fails. Default: finish at once.
	AnnotationDurationMS = "kwok.airlock.dev/duration-ms"
)

// kwok run standalone has no stages of its own: without these it would
// neither make the node Ready nor move Pods along.
//
//go:embed kwok/*.yaml
var kwokFiles embed.FS

// writeKwokConfig writes the kwok configuration and stages into dir and
// returns the kwok arguments that load them.
func writeKwokConfig(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	names, err := fs.Glob(kwokFiles, "kwok/*.yaml")
	if err != nil {
		return nil, err
	}
	var args []string
	for _, name := range names {
		data, err := kwokFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, filepath.Base(name))
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return nil, err
		}
		args = append(args, "--config="+path)
	}
	return args, nil
}
