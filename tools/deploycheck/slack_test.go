package deploycheck

import (
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// slackMethodScopes maps the slack-go calls Airlock may make to the bot
// scope each needs. A call missing here fails the test: decide its scope.
var slackMethodScopes = map[string]string{
	"PostMessage":   "chat:write",
	"UpdateMessage": "chat:write",
	"PostEphemeral": "chat:write",
	"DeleteMessage": "chat:write",
	// views.open needs no scope: a trigger_id from a verified interaction.
	"OpenView": "",
}

// The Slack app manifest asks for exactly the scopes of the Web API calls
// in Airlock's code, and points interactivity at the path the approvals
// server serves.
func TestSlackManifestMatchesTheCode(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "slack", "manifest.yaml"))
	require.NoError(t, err)
	var m struct {
		OAuth struct {
			Scopes struct {
				Bot  []string `json:"bot"`
				User []string `json:"user"`
			} `json:"scopes"`
		} `json:"oauth_config"`
		Settings struct {
			Interactivity struct {
				Enabled    bool   `json:"is_enabled"`
				RequestURL string `json:"request_url"`
			} `json:"interactivity"`
		} `json:"settings"`
	}
	require.NoError(t, yaml.Unmarshal(b, &m), "manifest parses")

	// Calls on a *slack.Client held in a field named api (approval.Notifier).
	call := regexp.MustCompile(`\.api\.([A-Z][A-Za-z]+?)(?:Context)?\(`)
	files, err := filepath.Glob(filepath.Join(repoRoot, "approval", "*.go"))
	require.NoError(t, err)
	var want []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, c := range call.FindAllStringSubmatch(string(src), -1) {
			scope, ok := slackMethodScopes[c[1]]
			require.True(t, ok, "%s calls slack %s: add its scope to the manifest and to slackMethodScopes", filepath.Base(f), c[1])
			if scope != "" {
				want = append(want, scope)
			}
		}
	}
	require.NotEmpty(t, want, "found Airlock's Slack calls")
	slices.Sort(want)
	want = slices.Compact(want)
	got := slices.Clone(m.OAuth.Scopes.Bot)
	slices.Sort(got)
	assert.Equal(t, want, got, "bot scopes are exactly those the code uses")
	assert.Empty(t, m.OAuth.Scopes.User, "no user scopes")

	assert.True(t, m.Settings.Interactivity.Enabled)
	u, err := url.Parse(m.Settings.Interactivity.RequestURL)
	require.NoError(t, err)
	assert.Equal(t, "https", u.Scheme, "Slack only posts to https")
	approvals, err := os.ReadFile(filepath.Join(repoRoot, "cmd", "airlock", "approvals.go"))
	require.NoError(t, err)
	assert.Contains(t, string(approvals), `"POST `+u.Path+`"`, "the approvals server serves the interactivity path")
}
