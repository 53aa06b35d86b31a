package devstack

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// takenPorts is a port picker that loses the race on purpose: the answers
// it is told to spoil carry a port another listener holds, at one index.
type takenPorts struct {
	busy  int         // a port bound by the test
	spoil map[int]int // answer number (from 1) → index of the busy port
	mu    sync.Mutex
	got   [][]int // every answer, in order
}

func newTakenPorts(t *testing.T, spoil map[int]int) *takenPorts {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return &takenPorts{busy: l.Addr().(*net.TCPAddr).Port, spoil: spoil}
}

func (tp *takenPorts) pick(n int) ([]int, error) {
	ports, err := freePorts(n)
	if err != nil {
		return nil, err
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if i, ok := tp.spoil[len(tp.got)+1]; ok {
		ports[i] = tp.busy
	}
	tp.got = append(tp.got, ports)
	return ports, nil
}

func (tp *takenPorts) answers() [][]int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([][]int(nil), tp.got...)
}

func portOf(t *testing.T, rawURL string) int {
	t.Helper()
	u, err := url.Parse(rawURL)
	require.NoError(t, err)
	port, err := strconv.Atoi(u.Port())
	require.NoError(t, err)
	return port
}

func readLog(t *testing.T, s *Stack, name string) string {
	t.Helper()
	b, err := os.ReadFile(s.LogPath(name))
	require.NoError(t, err)
	return string(b)
}

// A server whose port was taken between picking and binding starts again
// on new ports instead of failing the stack.
func TestStartRetriesOnNewPortsWhenOneIsTaken(t *testing.T) {
	tests := map[string]struct {
		opts    Options
		spoiled int // the answer that carries the busy port
		index   int // where in it
		picks   int // answers Start asks for in all
		proc    string
		check   func(t *testing.T, s *Stack) int // the server works; returns its port, 0 if not known
	}{
		"vault": {
			opts: Options{Vault: true}, spoiled: 1, index: 0, picks: 2, proc: ProcVault,
			check: func(t *testing.T, s *Stack) int {
				require.NoError(t, httpOK(t.Context(), http.DefaultClient, s.VaultAddr+"/v1/sys/health"))
				return portOf(t, s.VaultAddr)
			},
		},
		// The port seen taken in CI runs.
		"temporal's HTTP port": {
			opts: Options{Temporal: true}, spoiled: 1, index: 2, picks: 2, proc: ProcTemporal,
			check: func(t *testing.T, s *Stack) int {
				require.NoError(t, temporalReady(t.Context(), s.TemporalAddress, []string{"AirlockAgent"}))
				return 0
			},
		},
		// Answer 1 is etcd's pair, answer 2 the apiserver's port; then the
		// retry, the controller manager's and the scheduler's.
		"kube-apiserver": {
			opts: Options{Kube: true}, spoiled: 2, index: 0, picks: 5, proc: ProcKubeAPIServer,
			check: func(t *testing.T, s *Stack) int {
				cs, err := kubernetes.NewForConfig(s.RestConfig)
				require.NoError(t, err)
				_, err = cs.CoreV1().Nodes().Get(t.Context(), s.NodeName, metav1.GetOptions{})
				require.NoError(t, err, "the cluster works on the new port, kubeconfig included")
				return portOf(t, s.RestConfig.Host)
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			taken := newTakenPorts(t, map[int]int{tc.spoiled: tc.index})
			opts := tc.opts
			opts.pickPorts, opts.Logf = taken.pick, t.Logf
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			s, err := Start(ctx, opts)
			require.NoError(t, err, "one taken port does not fail the stack")
			t.Cleanup(func() { _ = s.Stop() })

			answers := taken.answers()
			require.Len(t, answers, tc.picks, "%v", answers)
			assert.NotContains(t, answers[tc.spoiled], taken.busy, "the retry got new ports")
			assert.Contains(t, readLog(t, s, tc.proc), "address already in use", "the first attempt met the taken port")
			if port := tc.check(t, s); port != 0 {
				assert.Equal(t, answers[tc.spoiled][tc.index], port)
			}
		})
	}
}

// The retries are bounded: a port that stays taken fails Start, saying why.
func TestStartGivesUpAfterMaxAttempts(t *testing.T) {
	taken := newTakenPorts(t, map[int]int{1: 0, 2: 0, 3: 0, 4: 0})
	s, err := Start(t.Context(), Options{Vault: true, Logf: t.Logf, pickPorts: taken.pick})
	require.Error(t, err)
	assert.Nil(t, s)
	assert.ErrorContains(t, err, "start vault: exited during start-up")
	assert.ErrorContains(t, err, "address already in use")
	assert.Len(t, taken.answers(), maxStartAttempts)
}

func TestStartPostgresRetriesOnANewPort(t *testing.T) {
	taken := newTakenPorts(t, map[int]int{1: 0})
	dir := t.TempDir()
	pg, err := startPostgres(t.Context(), dir, taken.pick)
	require.NoError(t, err)
	t.Cleanup(func() { _ = pg.Stop() })
	assert.NotEqual(t, taken.busy, pg.Port)
	assert.Len(t, taken.answers(), 2)
	out, err := pg.Psql(t.Context(), pg.User, pg.Password, "SELECT 1")
	require.NoError(t, err)
	assert.Equal(t, "1", out)
	log, err := os.ReadFile(filepath.Join(dir, "postgres.log"))
	require.NoError(t, err)
	assert.Contains(t, string(log), "Address already in use")
}
