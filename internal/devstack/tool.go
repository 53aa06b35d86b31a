package devstack

import (
	"fmt"
	"os"
	"path/filepath"
)

// ToolPath returns the path of a binary tools/build.sh built (promtool,
// promql-names, …) in DefaultBinDir, or an error saying how to build it.
func ToolPath(name string) (string, error) {
	dir, err := DefaultBinDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not built (run tools/build.sh or make tools): %w", name, err)
	}
	return p, nil
}

// TB is the part of testing.TB RequireTool uses (this package is linked
// into the airlock binary, which must not import testing).
type TB interface {
	Helper()
	Fatal(args ...any)
	Skip(args ...any)
}

// RequireTool returns ToolPath(name) for a test. A missing tool fails the
// test in CI (CI set), where make test builds every tool first, and skips it
// elsewhere.
func RequireTool(t TB, name string) string {
	t.Helper()
	p, err := ToolPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return p
}
