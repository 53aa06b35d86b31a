package prometheus

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/internal/devstack"
)

// promtool runs the promtool tools/build.sh built and returns its output.
func promtool(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), devstack.RequireTool(t, "promtool"), args...).CombinedOutput()
	return string(out), err
}

func TestRulesAreValid(t *testing.T) {
	out, err := promtool(t, "check", "rules", "--lint=all", "--lint-fatal", "airlock-rules.yaml")
	require.NoError(t, err, out)
	assert.Contains(t, out, "SUCCESS: 8 rules found")
}

// Every alert fires in its scenario and stays quiet outside it
// (airlock-rules.test.yaml), and every alert is tested.
func TestRulesUnitTests(t *testing.T) {
	out, err := promtool(t, "test", "rules", "airlock-rules.test.yaml")
	require.NoError(t, err, out)
	assert.Contains(t, out, "SUCCESS")

	rules := readFile(t, "airlock-rules.yaml")
	tests := readFile(t, "airlock-rules.test.yaml")
	alerts := regexp.MustCompile(`(?m)^\s+- alert: (\w+)`).FindAllStringSubmatch(rules, -1)
	require.NotEmpty(t, alerts)
	for _, a := range alerts {
		name := a[1]
		firing := regexp.MustCompile(`(?s)alertname: ` + name + `\s+exp_alerts:\s+- exp_labels`)
		quiet := regexp.MustCompile(`alertname: ` + name + `, exp_alerts: \[\]`)
		assert.Regexp(t, firing, tests, "%s is tested firing", name)
		assert.Regexp(t, quiet, tests, "%s is tested not firing", name)
	}
}

func TestEveryAlertSaysWhatToDo(t *testing.T) {
	rules := readFile(t, "airlock-rules.yaml")
	for _, block := range strings.Split(rules, "- alert: ")[1:] {
		name, _, _ := strings.Cut(block, "\n")
		assert.Regexp(t, `\n\s+for: \d+[smhd]\n`, block, "%s has a for:", name)
		assert.Regexp(t, `\n\s+severity: (critical|warning|info)\n`, block, "%s has a severity", name)
		assert.Contains(t, block, "summary:", name)
		assert.Contains(t, block, "description:", name)
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	return string(b)
}
