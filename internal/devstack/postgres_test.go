package devstack_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/internal/devstack"
)

func TestPostgres(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	begin := time.Now()
	pg, err := devstack.StartPostgres(ctx, dir)
	require.NoError(t, err)
	t.Cleanup(func() { _ = pg.Stop() })
	t.Logf("postgres ready in %s on %s (bin %s)", time.Since(begin).Round(time.Millisecond), pg.Addr(), pg.BinDir)

	assert.True(t, strings.HasPrefix(pg.URL(), "postgres://airlock:"+pg.Password+"@127.0.0.1:"), "URL has superuser and password")
	assert.Contains(t, pg.URL(), "sslmode=disable")

	t.Run("superuser connects over TCP", func(t *testing.T) {
		out, err := pg.Psql(ctx, pg.User, pg.Password, "SELECT current_user || ' ' || rolsuper::text FROM pg_roles WHERE rolname = current_user")
		require.NoError(t, err)
		assert.Equal(t, "airlock true", out)
	})

	t.Run("a wrong password is refused and not echoed", func(t *testing.T) {
		_, err := pg.Psql(ctx, pg.User, "wrong-secret-password", "SELECT 1")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "password authentication failed")
		assert.NotContains(t, err.Error(), "wrong-secret-password")
	})

	t.Run("runs unprivileged", func(t *testing.T) {
		if os.Geteuid() != 0 {
			return // started as an ordinary user, nothing to switch
		}
		status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pg.Pid()), "status"))
		require.NoError(t, err)
		for _, line := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(line, "Uid:") {
				assert.NotContains(t, strings.Fields(line)[1:], "0", "postgres runs as root: %s", line)
			}
		}
	})

	t.Run("stop ends every server process", func(t *testing.T) {
		pid := pg.Pid()
		require.NotZero(t, pid)
		begin := time.Now()
		require.NoError(t, pg.Stop())
		t.Logf("stop took %s", time.Since(begin).Round(time.Millisecond))
		require.NoError(t, pg.Stop(), "second Stop")
		assert.Zero(t, pg.Pid())
		assert.False(t, alive(pid), "postgres (pid %d) or its children still running", pid)
		_, err := pg.Psql(ctx, pg.User, pg.Password, "SELECT 1")
		assert.Error(t, err, "connect after Stop")
	})
}

func TestPostgresMissingBinaries(t *testing.T) {
	t.Setenv(devstack.PostgresBinDirEnv, t.TempDir())
	_, err := devstack.StartPostgres(t.Context(), t.TempDir())
	require.ErrorIs(t, err, devstack.ErrPostgresNotInstalled)
	assert.ErrorContains(t, err, "apt-get install -y postgresql")
}

func TestPostgresFoundWithoutPath(t *testing.T) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	require.NotEmpty(t, dirs, "the Debian postgresql package is required (.ci/run installs it)")
	// As on a stock Debian machine, where the server binaries are not on PATH.
	t.Setenv("PATH", "/usr/bin:/bin")
	pg, err := devstack.StartPostgres(t.Context(), t.TempDir())
	require.NoError(t, err)
	defer pg.Stop()
	assert.True(t, strings.HasPrefix(pg.BinDir, "/usr/lib/postgresql/"), pg.BinDir)
	out, err := pg.Psql(t.Context(), pg.User, pg.Password, "SHOW server_version_num")
	require.NoError(t, err)
	assert.NotEmpty(t, out)
}
