package vault_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/internal/devstack"
	"github.com/airlockhq/airlock/vault"
)

// startPostgres runs a PostgreSQL server for one test, with a table the
// read-only role may read.
func startPostgres(t *testing.T) *devstack.Postgres {
	t.Helper()
	pg, err := devstack.StartPostgres(t.Context(), t.TempDir())
	require.NoError(t, err)
	t.Cleanup(func() { _ = pg.Stop() })
	_, err = pg.Psql(t.Context(), pg.User, pg.Password,
		"CREATE TABLE widgets (id int PRIMARY KEY, name text); INSERT INTO widgets VALUES (1, 'sprocket'), (2, 'gear');")
	require.NoError(t, err)
	return pg
}

// configureDatabase points a new database engine mount at pg with a
// read-only role, and returns the role as "<mount>/<role>".
func configureDatabase(t *testing.T, b *vault.Broker, pg *devstack.Postgres) string {
	t.Helper()
	ctx := t.Context()
	mount := uniq("database")
	require.NoError(t, b.ConfigureDatabase(ctx, vault.DatabaseConfig{
		Mount:         mount,
		Name:          "widgets",
		ConnectionURL: fmt.Sprintf("postgresql://{{username}}:{{password}}@%s/%s?sslmode=disable", pg.Addr(), pg.Database),
		Username:      pg.User,
		Password:      pg.Password,
		AllowedRoles:  []string{"readonly"},
	}))
	role := vault.PostgresReadOnlyRole("readonly", "widgets", "public", 10*time.Minute, time.Hour)
	role.Mount = mount
	require.NoError(t, b.EnsureDatabaseRole(ctx, role))
	return mount + "/readonly"
}

func dbPolicy(role string) string {
	mount, name, _ := strings.Cut(role, "/")
	return fmt.Sprintf(`
path "%s/creds/%s" {
  capabilities = ["read"]
}
path "secret/data/db-test/*" {
  capabilities = ["read"]
}
`, mount, name)
}

func TestDatabaseCredentials(t *testing.T) {
	ctx := t.Context()
	pg := startPostgres(t)
	role := configureDatabase(t, rootBroker(t), pg)
	s := setupBroker(t, dbPolicy(role))
	agents, err := vault.NewAgentTokens(s.worker, s.agentConfig())
	require.NoError(t, err)
	defer agents.Close()
	issue := func(agent string) *vault.Broker {
		t.Helper()
		cred, err := agents.IssueActionToken(ctx, agent, vault.TokenRequest{Policies: []string{s.actionPolicy}, TTL: 10 * time.Minute})
		require.NoError(t, err)
		as, err := s.worker.As(cred)
		require.NoError(t, err)
		return as
	}
	connect := func(c vault.DBCredential) (string, error) {
		return pg.Psql(ctx, c.Username(), c.Password(), "SELECT string_agg(name, ',' ORDER BY id) FROM widgets")
	}

	t.Run("the action reads credentials that work and only read", func(t *testing.T) {
		as := issue("agent-db")
		cred, err := as.DatabaseCredential(ctx, role)
		require.NoError(t, err)
		assert.NotEmpty(t, cred.LeaseID)
		mount, name, _ := strings.Cut(role, "/")
		assert.True(t, strings.HasPrefix(cred.LeaseID, mount+"/creds/"+name+"/"), cred.LeaseID)
		assert.Equal(t, 10*time.Minute, cred.TTL)
		assert.True(t, cred.Renewable)
		assertHidden(t, cred, cred.Username(), cred.Password())

		out, err := connect(cred)
		require.NoError(t, err)
		assert.Equal(t, "sprocket,gear", out)
		_, err = pg.Psql(ctx, cred.Username(), cred.Password(), "INSERT INTO widgets VALUES (3, 'bolt')")
		assert.ErrorContains(t, err, "permission denied", "read-only")
		assertNoSecret(t, err, cred.Password())

		valid, err := s.worker.LeaseValid(ctx, cred.LeaseID)
		require.NoError(t, err)
		assert.True(t, valid)
		ttl, err := s.worker.Renew(ctx, cred.Ref(), 0)
		require.NoError(t, err, "the worker renews the action's lease by id")
		assert.Equal(t, 10*time.Minute, ttl)

		require.NoError(t, s.worker.RevokeLease(ctx, cred.LeaseID))
		valid, err = s.worker.LeaseValid(ctx, cred.LeaseID)
		require.NoError(t, err)
		assert.False(t, valid)
		_, err = connect(cred)
		require.Error(t, err, "a revoked credential no longer connects")
		assertNoSecret(t, err, cred.Password())
		require.NoError(t, s.worker.RevokeLease(ctx, cred.LeaseID), "revoking twice is harmless")
		_, err = s.worker.Renew(ctx, cred.Ref(), 0)
		assert.ErrorIs(t, err, vault.ErrLeaseNotFound)
	})

	t.Run("the kill switch drops the agent's database users and their sessions", func(t *testing.T) {
		as := issue("agent-killed")
		cred, err := as.DatabaseCredential(ctx, role)
		require.NoError(t, err)
		_, err = connect(cred)
		require.NoError(t, err)
		other, err := issue("agent-spared").DatabaseCredential(ctx, role)
		require.NoError(t, err)
		// A session that is running when the kill comes.
		running := make(chan error, 1)
		go func() {
			_, err := pg.Psql(ctx, cred.Username(), cred.Password(), "SELECT pg_sleep(30)")
			running <- err
		}()
		require.Eventually(t, func() bool {
			n, err := pg.Psql(ctx, pg.User, pg.Password,
				fmt.Sprintf("SELECT count(*) FROM pg_stat_activity WHERE usename = '%s' AND query LIKE '%%pg_sleep%%'", cred.Username()))
			return err == nil && n == "1"
		}, 10*time.Second, 50*time.Millisecond)

		_, err = agents.RevokeAgent(ctx, "agent-killed")
		require.NoError(t, err)
		select {
		case err := <-running:
			assert.ErrorContains(t, err, "terminating connection", "the running session is ended")
			assertNoSecret(t, err, cred.Password())
		case <-time.After(15 * time.Second):
			t.Error("the killed agent's running session survived")
		}
		assert.Eventually(t, func() bool {
			_, err := connect(cred)
			return err != nil
		}, 10*time.Second, 100*time.Millisecond, "the killed agent's database user is dropped")
		valid, err := s.worker.LeaseValid(ctx, cred.LeaseID)
		require.NoError(t, err)
		assert.False(t, valid)
		_, err = connect(other)
		assert.NoError(t, err, "another agent's credentials still work")
	})

	t.Run("roles outside the action's policy are refused", func(t *testing.T) {
		as := issue("agent-db")
		_, err := as.DatabaseCredential(ctx, "database/admin")
		assert.ErrorContains(t, err, "403")
		_, err = s.worker.DatabaseCredential(ctx, role)
		assert.ErrorContains(t, err, "403", "the worker itself reads no secrets")
	})

	t.Run("lease ids that are not there", func(t *testing.T) {
		valid, err := s.worker.LeaseValid(ctx, role+"/nonexistent")
		require.NoError(t, err)
		assert.False(t, valid)
		assert.NoError(t, s.worker.RevokeLease(ctx, role+"/nonexistent"))
		assert.Error(t, s.worker.RevokeLease(ctx, ""))
	})
}

func TestConfigureDatabaseKeepsThePasswordOutOfErrors(t *testing.T) {
	ctx := t.Context()
	pg := startPostgres(t)
	b := rootBroker(t)
	wrong := "not-the-password-" + strings.Repeat("x", 8)
	dc := vault.DatabaseConfig{
		Mount:         uniq("database"),
		Name:          "widgets",
		ConnectionURL: fmt.Sprintf("postgresql://{{username}}:{{password}}@%s/postgres?sslmode=disable", pg.Addr()),
		Username:      pg.User,
		Password:      wrong,
	}
	err := b.ConfigureDatabase(ctx, dc)
	require.Error(t, err)
	t.Log(err)
	assertNoSecret(t, err, wrong)
	assert.NotContains(t, fmt.Sprintf("%v %+v %#v", dc, dc, dc), wrong)

	// A URL with the password inline is echoed by nobody either.
	dc.ConnectionURL = fmt.Sprintf("postgresql://%s:%s@%s/postgres?sslmode=disable", pg.User, wrong, pg.Addr())
	dc.Username, dc.Password = "", ""
	err = b.ConfigureDatabase(ctx, dc)
	require.Error(t, err)
	assertNoSecret(t, err, wrong)
}

func TestReadKV(t *testing.T) {
	ctx := t.Context()
	root := rootClient(t)
	_, err := root.KVv2("secret").Put(ctx, "db-test/app", map[string]any{"password": "hunter2-kv-secret", "user": "app"})
	require.NoError(t, err)
	_, err = root.KVv2("secret").Put(ctx, "db-test/numbers", map[string]any{"port": 5432})
	require.NoError(t, err)
	s := setupBroker(t, dbPolicy("database/none"))
	agents, err := vault.NewAgentTokens(s.worker, s.agentConfig())
	require.NoError(t, err)
	defer agents.Close()
	cred, err := agents.IssueActionToken(ctx, "agent-kv", vault.TokenRequest{Policies: []string{s.actionPolicy}, TTL: time.Minute})
	require.NoError(t, err)
	as, err := s.worker.As(cred)
	require.NoError(t, err)

	kv, err := as.ReadKV(ctx, "secret/db-test/app")
	require.NoError(t, err)
	assert.Equal(t, []string{"password", "user"}, kv.Keys())
	v, ok := kv.Get("password")
	assert.True(t, ok)
	assert.Equal(t, "hunter2-kv-secret", v)
	assert.Equal(t, "hunter2-kv-secret", kv.Data()["password"])
	assert.Equal(t, 1, kv.Version)
	assertHidden(t, kv, "hunter2-kv-secret")
	assert.Contains(t, kv.String(), "password", "key names are shown")

	_, err = as.ReadKV(ctx, "secret/db-test/missing")
	assert.ErrorIs(t, err, vault.ErrSecretNotFound)
	_, err = as.ReadKV(ctx, "secret/db-test/numbers")
	assert.ErrorContains(t, err, `"port" is a json.Number`)
	assert.NotContains(t, err.Error(), "5432")
	_, err = as.ReadKV(ctx, "secret")
	assert.ErrorContains(t, err, "<mount>/<path>")
	_, err = s.worker.ReadKV(ctx, "secret/db-test/app")
	assert.ErrorContains(t, err, "403", "the worker itself reads no secrets")
	_, err = s.worker.As(vault.Credential{})
	assert.Error(t, err)
}
