package browser

import (
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// uiPage is one page check for ui.mjs.
type uiPage struct {
	URL        string   `json:"url"`
	Click      string   `json:"click,omitempty"`
	Expect     []string `json:"expect"`
	Screenshot string   `json:"screenshot,omitempty"`
	TimeoutMs  int      `json:"timeoutMs"`
}

// uiSeen is what ui.mjs saw on a page.
type uiSeen struct {
	URL     string   `json:"url"`
	Found   []string `json:"found"`
	Missing []string `json:"missing"`
	Text    string   `json:"text"`
}

// browse opens pages in headless Chromium through ui.mjs.
func browse(t *testing.T, chromium string, pages []uiPage) []uiSeen {
	t.Helper()
	cfg, err := json.Marshal(map[string]any{"chromium": chromium, "pages": pages})
	require.NoError(t, err)
	cmd := exec.CommandContext(t.Context(), "node", "ui.mjs", string(cfg))
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.Output()
	require.NoError(t, err, "ui.mjs: %s", out)
	var seen []uiSeen
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var s uiSeen
		require.NoError(t, json.Unmarshal([]byte(line), &s), line)
		seen = append(seen, s)
	}
	require.Len(t, seen, len(pages))
	return seen
}

// needBrowser finds Chromium and node and installs puppeteer-core from the
// committed lock file; without them the test is skipped (.ci/run installs
// Chromium, so CI runs it).
func needBrowser(t *testing.T) string {
	t.Helper()
	chromium := os.Getenv("AIRLOCK_CHROMIUM")
	if chromium == "" {
		var err error
		if chromium, err = exec.LookPath("chromium"); err != nil {
			t.Skip("chromium is not installed (apt-get install chromium): the Temporal UI check needs a real browser")
		}
	}
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: ui.mjs drives Chromium with puppeteer-core", tool)
		}
	}
	if _, err := os.Stat("node_modules/puppeteer-core"); err != nil {
		npm := exec.CommandContext(t.Context(), "npm", "ci", "--no-audit", "--no-fund")
		out, err := npm.CombinedOutput()
		require.NoError(t, err, "npm ci: %s", out)
	}
	return chromium
}

// A person opens the URL `airlock dev` prints: with nothing set by hand,
// the cycle's input is readable (decoded through the codec server the UI
// was started with) and its timeline says what each step did.
func TestTemporalUIShowsDecodedCyclesWithSummaries(t *testing.T) {
	chromium := needBrowser(t)
	d := startDev(t)
	dir := d.waitFor(t, reStackDir, 3*time.Minute)[1]
	d.waitFor(t, regexpStackIsUp, 4*time.Minute)
	d.snapshot(t)
	out := d.output()
	ui := reUI.FindStringSubmatch(out)[1]
	sample := reSample.FindStringSubmatch(out)[1]
	advisor := reAdvisor.FindStringSubmatch(out)[1]
	page := func(wfID string) string {
		return ui + "/namespaces/default/workflows/" + url.PathEscape(wfID)
	}
	shots := t.TempDir()
	if dir := os.Getenv("AIRLOCK_SCREENSHOTS"); dir != "" {
		shots = dir
	}
	seen := browse(t, chromium, []uiPage{
		{URL: page(sample), TimeoutMs: 45000, Screenshot: filepath.Join(shots, "cycle-history.png"), Expect: []string{
			// The input, encrypted in history, decoded in the page.
			`"rationale": "absorb the spike"`, `"type": "scale-deployment"`, `"principal": "agent:sample"`,
			// The timeline's summaries instead of bare activity names.
			"stage scale-deployment #1", "run scale-deployment #1", "release scale-deployment #1", "verify the agent's signature",
		}},
		{URL: page(sample), Click: "User Metadata", TimeoutMs: 30000, Screenshot: filepath.Join(shots, "cycle-metadata.png"), Expect: []string{
			"sample: cluster-read checkout, scale-deployment checkout→5",
			"#1 scale-deployment checkout→5: absorb the spike",
		}},
		{URL: page(advisor), TimeoutMs: 30000, Screenshot: filepath.Join(shots, "cycle-waiting.png"), Expect: []string{
			"Running", "approval window, action 1", "post approval message, action 1",
		}},
	})
	t.Logf("screenshots in %s", shots)
	for _, s := range seen {
		assert.Empty(t, s.Missing, "%s: not on the page (found %q)", s.URL, s.Found)
		assert.NotContains(t, s.Text, "binary/encrypted", "%s shows an encrypted payload", s.URL)
	}
	if t.Failed() {
		t.Logf("page text:\n%s", seen[0].Text)
	}

	// The printed click, pasted into a shell, approves the waiting write.
	click := exec.CommandContext(t.Context(), "sh", "-c", clickCommand(t, out))
	click.Env = append(os.Environ(), "SLACK_SIGNING_SECRET="+reSecret.FindStringSubmatch(out)[1])
	answer, err := click.CombinedOutput()
	require.NoError(t, err, string(answer))
	assert.Equal(t, "approved", strings.TrimSpace(string(answer)))

	d.interrupt(t)
	assert.Zero(t, d.wait(t, time.Minute), "Ctrl-C stops airlock dev cleanly")
	d.assertCleanExit(t, dir)
}
