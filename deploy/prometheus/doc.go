// Package prometheus holds Airlock's Prometheus alert rules
// (airlock-rules.yaml) and their unit tests (airlock-rules.test.yaml); its
// Go test runs promtool on them. There is no Go code to import.
package prometheus
