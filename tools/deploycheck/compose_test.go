package deploycheck

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// repoRoot is the product's repository, seen from this module.
const repoRoot = "../.."

// airlockServices are the compose services that run the airlock image,
// with the subcommand each runs.
var airlockServices = map[string]string{
	"worker":    "worker",
	"approvals": "approvals",
	"codec":     "codec-server",
}

// loadCompose loads docker-compose.yaml the way `docker compose` does,
// with .env.example as its .env.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{filepath.Join(repoRoot, "docker-compose.yaml")},
		cli.WithWorkingDirectory(repoRoot),
		cli.WithEnvFiles(filepath.Join(repoRoot, ".env.example")),
		cli.WithDotEnv,
		cli.WithName("airlock"),
	)
	require.NoError(t, err)
	p, err := cli.ProjectFromOptions(t.Context(), opts)
	require.NoError(t, err, "docker-compose.yaml loads with compose-go (the library docker compose uses)")
	return p
}

func TestComposeHasTheWholeStack(t *testing.T) {
	p := loadCompose(t)
	for _, name := range []string{"temporal", "vault", "worker", "approvals", "codec",
		"otel-collector", "jaeger", "prometheus", "grafana"} {
		assert.Contains(t, p.ServiceNames(), name)
	}
	// The dev server persists its history in a named volume.
	temporal := p.Services["temporal"]
	assert.Contains(t, temporal.Command, "--db-filename=/data/temporal.db")
	assert.True(t, mounts(temporal, "temporal-data", "/data"), "temporal.db lives on a volume")
	for _, sa := range []string{"AirlockAgent", "AirlockPhase", "AirlockOutcome", "AirlockRisk"} {
		assert.Contains(t, temporal.Command, "--search-attribute="+sa+"=Keyword")
	}
	// The UI decodes payloads through the codec server's published port.
	codecPort := p.Services["codec"].Ports[0].Published
	assert.Contains(t, temporal.Command, "--ui-codec-endpoint=http://localhost:"+codecPort)
}

// Every variable an Airlock service sets is one Airlock reads: a misspelt
// name would be silently ignored by the process.
func TestComposeAirlockEnvironmentIsAirlockConfiguration(t *testing.T) {
	p := loadCompose(t)
	read, err := ProductEnvNames(repoRoot)
	require.NoError(t, err)
	// The CLI's commands: cobra constructors declaring Use: "<name> …".
	var cli []byte
	files, err := filepath.Glob(filepath.Join(repoRoot, "cmd", "airlock", "*.go"))
	require.NoError(t, err)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		cli = append(cli, b...)
	}
	for svc, sub := range airlockServices {
		t.Run(svc, func(t *testing.T) {
			s := p.Services[svc]
			require.NotEmpty(t, s.Command)
			assert.Equal(t, sub, s.Command[0])
			assert.Regexp(t, fmt.Sprintf(`Use:\s+"%s[ "]`, regexp.QuoteMeta(sub)), string(cli), "airlock has the subcommand")
			require.NotEmpty(t, s.Environment)
			for name, v := range s.Environment {
				_, byAirlock := read[name]
				if !byAirlock && !slices.Contains(OTelSDKEnv, name) {
					t.Errorf("%s sets %s, which no Airlock code reads", svc, name)
				}
				if v == nil {
					t.Errorf("%s: %s has no value in .env.example", svc, name)
				}
			}
			// Airlock's hardening in compose matches the Pod's.
			assert.True(t, s.ReadOnly, "read-only root")
			assert.Equal(t, "65532:65532", s.User)
			assert.Equal(t, []string{"ALL"}, s.CapDrop)
		})
	}
	// What each process cannot start without.
	for svc, names := range map[string][]string{
		"worker":    {"TEMPORAL_ADDRESS", "VAULT_ADDR", "VAULT_TOKEN", "KUBECONFIG", "AIRLOCK_CATALOG", "AIRLOCK_METRICS_ADDR"},
		"approvals": {"TEMPORAL_ADDRESS", "SLACK_SIGNING_SECRET"},
		"codec":     {"VAULT_ADDR", "VAULT_TOKEN", "AIRLOCK_CODEC_TOKEN", "AIRLOCK_CODEC_UI_ORIGIN"},
	} {
		for _, n := range names {
			v := p.Services[svc].Environment[n]
			if assert.NotNil(t, v, "%s needs %s", svc, n) {
				assert.NotEmpty(t, *v, "%s needs %s", svc, n)
			}
		}
	}
}

// Files the Airlock services are pointed at are mounted where they look.
func TestComposeConfiguredPathsAreMounted(t *testing.T) {
	p := loadCompose(t)
	for svc := range airlockServices {
		s := p.Services[svc]
		for _, name := range []string{"AIRLOCK_CATALOG", "KUBECONFIG"} {
			v := s.Environment[name]
			if v == nil {
				continue
			}
			found := false
			for _, m := range s.Volumes {
				if m.Target == *v || strings.HasPrefix(*v, m.Target+"/") {
					found = true
				}
			}
			assert.True(t, found, "%s: %s=%s is on a mount", svc, name, *v)
		}
	}
}

// Published host ports are unique; each Airlock service publishes the port
// its process listens on; bind-mounted files exist; named volumes are
// declared and used.
func TestComposePortsAndVolumesAreConsistent(t *testing.T) {
	p := loadCompose(t)
	host := map[string]string{}
	for name, s := range p.Services {
		for _, port := range s.Ports {
			if other, dup := host[port.Published]; dup {
				t.Errorf("host port %s published by %s and %s", port.Published, other, name)
			}
			host[port.Published] = name
		}
	}
	listen := map[string]string{"worker": "AIRLOCK_METRICS_ADDR", "approvals": "AIRLOCK_APPROVALS_LISTEN", "codec": "AIRLOCK_CODEC_LISTEN"}
	for svc, env := range listen {
		s := p.Services[svc]
		require.NotNil(t, s.Environment[env])
		_, port, _ := strings.Cut(*s.Environment[env], ":")
		var targets []string
		for _, pc := range s.Ports {
			targets = append(targets, strconv.Itoa(int(pc.Target)))
		}
		assert.Contains(t, targets, port, "%s publishes the port its %s names", svc, env)
		if s.HealthCheck != nil {
			assert.Contains(t, strings.Join(s.HealthCheck.Test, " "), "127.0.0.1:"+port, "%s probes its own port", svc)
		}
	}
	used := map[string]bool{}
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			switch v.Type {
			case types.VolumeTypeBind:
				_, err := os.Stat(v.Source)
				assert.NoError(t, err, "%s mounts %s", name, v.Source)
				assert.True(t, v.ReadOnly, "%s mounts %s read-only", name, v.Source)
			case types.VolumeTypeVolume:
				_, declared := p.Volumes[v.Source]
				assert.True(t, declared, "%s uses undeclared volume %s", name, v.Source)
				used[v.Source] = true
			}
		}
	}
	for v := range p.Volumes {
		assert.True(t, used[v], "volume %s is declared but unused", v)
	}
}

// Services start in order: what a service waits for as healthy has a
// health check, every long-running service that has a client inside its
// image is probed, and the dependency graph has no cycle (compose-go
// refuses cycles when it loads).
func TestComposeHealthChecksAndOrdering(t *testing.T) {
	p := loadCompose(t)
	for _, name := range []string{"temporal", "vault", "worker", "approvals", "codec", "prometheus", "grafana"} {
		hc := p.Services[name].HealthCheck
		if assert.NotNil(t, hc, "%s has a health check", name) {
			assert.Equal(t, "CMD", hc.Test[0], "%s: exec form, the airlock image has no shell", name)
		}
	}
	for name, s := range p.Services {
		for dep, d := range s.DependsOn {
			require.Contains(t, p.Services, dep)
			if d.Condition == types.ServiceConditionHealthy {
				assert.NotNil(t, p.Services[dep].HealthCheck, "%s waits for %s to be healthy", name, dep)
			}
		}
	}
	for svc, deps := range map[string][]string{
		"worker":    {"temporal", "vault", "kwok"},
		"approvals": {"temporal", "worker"},
		"codec":     {"vault"},
		"grafana":   {"prometheus"},
	} {
		for _, d := range deps {
			assert.Contains(t, p.Services[svc].DependsOn, d, "%s starts after %s", svc, d)
		}
	}
	assert.Equal(t, types.ServiceConditionHealthy, p.Services["worker"].DependsOn["temporal"].Condition)
}

// Prometheus scrapes the ports the Airlock services serve /metrics on.
func TestComposePrometheusScrapesAirlock(t *testing.T) {
	p := loadCompose(t)
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "compose", "prometheus.yml"))
	require.NoError(t, err)
	var cfg struct {
		RuleFiles     []string `json:"rule_files"`
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
		} `json:"scrape_configs"`
	}
	require.NoError(t, yaml.Unmarshal(b, &cfg))
	var targets []string
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	for _, want := range []string{"worker:9090", "approvals:8080"} {
		assert.Contains(t, targets, want)
	}
	// The alert rules it names are mounted from the repository.
	require.Equal(t, []string{"/etc/prometheus/rules/airlock-rules.yaml"}, cfg.RuleFiles)
	var src string
	for _, v := range p.Services["prometheus"].Volumes {
		if v.Target == cfg.RuleFiles[0] {
			src = v.Source
		}
	}
	want, err := filepath.Abs(filepath.Join(repoRoot, "deploy", "prometheus", "airlock-rules.yaml"))
	require.NoError(t, err)
	assert.Equal(t, want, src, "prometheus mounts the rules it loads")
	assert.FileExists(t, src)
	for _, tg := range targets {
		svc, port, _ := strings.Cut(tg, ":")
		s, ok := p.Services[svc]
		if !assert.True(t, ok, "scrape target %s is a service", tg) {
			continue
		}
		var exposed []string
		for _, pc := range s.Ports {
			exposed = append(exposed, strconv.Itoa(int(pc.Target)))
		}
		assert.Contains(t, exposed, port, "%s listens on %s", svc, port)
	}
}

// The provisioned dashboard charts every Airlock metric and only metrics
// Airlock exports.
func TestGrafanaDashboardUsesAirlockMetrics(t *testing.T) {
	metrics, err := MetricNames(repoRoot)
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "grafana", "dashboards", "airlock.json"))
	require.NoError(t, err)
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(b, &d))
	require.NotEmpty(t, d.Panels)
	series := regexp.MustCompile(`airlock_[a-z_]+`)
	charted := map[string]bool{}
	for _, p := range d.Panels {
		if p.Type == "row" { // a heading, no chart
			continue
		}
		require.NotEmpty(t, p.Targets, p.Title)
		for _, tg := range p.Targets {
			for _, s := range series.FindAllString(tg.Expr, -1) {
				base := s
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					base = strings.TrimSuffix(base, suf)
				}
				assert.Contains(t, metrics, base, "panel %q: %s is not an Airlock metric", p.Title, s)
				charted[base] = true
			}
		}
	}
	for _, m := range metrics {
		assert.True(t, charted[m], "%s is not on the dashboard", m)
	}
}

// mounts reports whether s mounts source at target.
func mounts(s types.ServiceConfig, source, target string) bool {
	for _, v := range s.Volumes {
		if v.Source == source && v.Target == target {
			return true
		}
	}
	return false
}
