package deploycheck

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// envName is what an environment variable name looks like.
var envName = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// envReaders are the functions whose first argument, a string literal, is
// the name of an environment variable they read: os.Getenv, os.LookupEnv
// and the product's small helpers (envOr, envFloat, envDuration, …).
func isEnvReader(name string) bool {
	return name == "Getenv" || name == "LookupEnv" || strings.HasPrefix(name, "env")
}

// ProductEnvNames returns every environment variable name Airlock's code
// reads, each with the first place that reads it. It parses the product's
// non-test Go sources under root (the repository), skipping tools/, so a
// new variable is picked up without a list to keep in sync. Constants named
// Env* (e.g. telemetry.EnvTraceParent) count too.
func ProductEnvNames(root string) (map[string]string, error) {
	names := map[string]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel == "tools" || rel == "bin" || strings.HasPrefix(d.Name(), ".") && rel != "." || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return fmt.Errorf("parse %s: %w", rel, err)
		}
		add := func(lit *ast.BasicLit) {
			if lit == nil || lit.Kind != token.STRING {
				return
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil || !envName.MatchString(s) {
				return
			}
			if _, ok := names[s]; !ok {
				p := fset.Position(lit.Pos())
				names[s] = fmt.Sprintf("%s:%d", rel, p.Line)
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				var fn string
				switch f := n.Fun.(type) {
				case *ast.Ident:
					fn = f.Name
				case *ast.SelectorExpr:
					fn = f.Sel.Name
				}
				if isEnvReader(fn) && len(n.Args) > 0 {
					lit, _ := n.Args[0].(*ast.BasicLit)
					add(lit)
				}
			case *ast.ValueSpec:
				for i, id := range n.Names {
					if strings.HasPrefix(id.Name, "Env") && i < len(n.Values) {
						lit, _ := n.Values[i].(*ast.BasicLit)
						add(lit)
					}
				}
			}
			return true
		})
		return nil
	})
	return names, err
}

// OTelSDKEnv are the standard OpenTelemetry variables the Go SDK and its
// OTLP/HTTP exporters read on Airlock's behalf (Airlock's code only decides
// whether to export: telemetry/telemetry.go).
var OTelSDKEnv = []string{
	"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SDK_DISABLED",
	"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
	"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TIMEOUT",
	"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_CERTIFICATE",
	"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
	"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_METRIC_EXPORT_INTERVAL",
}

// MetricNames returns the Prometheus names of Airlock's instruments: the
// values of the Metric* constants in telemetry/metrics.go.
func MetricNames(root string) ([]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, "telemetry", "metrics.go"), nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, id := range vs.Names {
				if !strings.HasPrefix(id.Name, "Metric") || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					v, _ := strconv.Unquote(lit.Value)
					out = append(out, v)
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no Metric* constants in telemetry/metrics.go")
	}
	return out, nil
}
