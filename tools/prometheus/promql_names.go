// Command promql-names parses PromQL expressions with Prometheus's own
// parser and prints the metric names each one selects. Airlock's tests use
// it to check that every metric the dashboard and the alert rules read is
// one the worker exports, without linking Prometheus into the product's
// module.
//
// Input (stdin): a JSON array of expressions. Output (stdout): a JSON array
// with, for each expression, {"expr", "metrics", "error"}. A selector that
// names no metric by equality ({__name__=~"…"}) is reported in "error": it
// cannot be checked.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type result struct {
	Expr    string   `json:"expr"`
	Metrics []string `json:"metrics"`
	Error   string   `json:"error,omitempty"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "promql-names:", err)
		os.Exit(1)
	}
}

func run() error {
	var exprs []string
	if err := json.NewDecoder(os.Stdin).Decode(&exprs); err != nil {
		return fmt.Errorf("read expressions: %w", err)
	}
	p := parser.NewParser(parser.Options{})
	out := make([]result, 0, len(exprs))
	for _, e := range exprs {
		out = append(out, names(p, e))
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

func names(p parser.Parser, e string) result {
	r := result{Expr: e, Metrics: []string{}}
	expr, err := p.ParseExpr(e)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	for _, sel := range parser.ExtractSelectors(expr) {
		name := ""
		for _, m := range sel {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		if name == "" {
			r.Error = fmt.Sprintf("a selector names no metric: %v", sel)
			continue
		}
		if !slices.Contains(r.Metrics, name) {
			r.Metrics = append(r.Metrics, name)
		}
	}
	slices.Sort(r.Metrics)
	return r
}
