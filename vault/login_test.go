package vault_test

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/airlockhq/airlock/vault"
)

// loginPolicy is what the test roles grant: enough to prove the session's
// token works and carries the role's policy.
const loginPolicy = `
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
`

// writeSecretFile writes a credential file the way Kubernetes or an
// orchestrator would.
func writeSecretFile(t *testing.T, value string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(path, []byte(value+"\n"), 0o600))
	return path
}

// selfPolicies returns the policies of the session's current token.
func selfPolicies(t *testing.T, s *vault.Session) []string {
	t.Helper()
	c := rootClient(t)
	looked, err := c.Auth().Token().LookupAccessor(s.Accessor())
	require.NoError(t, err)
	pols, err := looked.TokenPolicies()
	require.NoError(t, err)
	return pols
}

// sessionAlive tells whether the session's current token exists.
func sessionAlive(t *testing.T, s *vault.Session) bool {
	t.Helper()
	return accessorAlive(t, s.Accessor())
}

// accessorAlive tells whether the token with this accessor exists.
func accessorAlive(t *testing.T, accessor string) bool {
	t.Helper()
	_, err := rootClient(t).Auth().Token().LookupAccessor(accessor)
	return err == nil
}

func TestLoginToken(t *testing.T) {
	verifyNoLeaks(t)
	ctx := t.Context()

	t.Run("root token: used as is, nothing to renew", func(t *testing.T) {
		s, err := vault.Login(ctx, vault.Config{Address: stack.VaultAddr, Token: stack.VaultToken}, vault.LoginConfig{})
		require.NoError(t, err)
		defer s.Close()
		assert.Equal(t, []string{"root"}, selfPolicies(t, s))
	})

	t.Run("short-lived token is renewed", func(t *testing.T) {
		create := func() *api.Secret {
			tok, err := rootClient(t).Auth().Token().Create(&api.TokenCreateRequest{
				Policies: []string{"default"}, TTL: "3s", ExplicitMaxTTL: "1m", Renewable: new(true),
			})
			require.NoError(t, err)
			return tok
		}
		tok, twin := create(), create()
		s, err := vault.Login(ctx, vault.Config{Address: stack.VaultAddr, Token: tok.Auth.ClientToken}, vault.LoginConfig{Method: vault.AuthToken})
		require.NoError(t, err)
		defer s.Close()
		// The twin, created with it and not renewed, expires: so would the
		// session's token without renewal.
		require.Eventually(t, func() bool { return !accessorAlive(t, twin.Auth.Accessor) },
			20*time.Second, 100*time.Millisecond, "the unrenewed twin expires")
		assert.True(t, sessionAlive(t, s), "a 3s token lives on while the session renews it")
		s.Close()
		s.Close()
	})

	t.Run("unknown method", func(t *testing.T) {
		_, err := vault.Login(ctx, vault.Config{Address: stack.VaultAddr, Token: stack.VaultToken}, vault.LoginConfig{Method: "ldap"})
		assert.ErrorContains(t, err, "unknown auth method")
	})
}

func TestLoginAppRole(t *testing.T) {
	verifyNoLeaks(t)
	ctx := t.Context()
	root := rootClient(t)
	mount, policy := uniq("approle"), uniq("login")
	require.NoError(t, root.Sys().EnableAuthWithOptions(mount, &api.EnableAuthOptions{Type: "approle"}))
	require.NoError(t, root.Sys().PutPolicy(policy, loginPolicy))
	_, err := root.Logical().Write("auth/"+mount+"/role/airlock-worker", map[string]any{
		"token_policies": policy, "token_ttl": "3s", "token_max_ttl": "5s", "secret_id_ttl": "10m",
	})
	require.NoError(t, err)
	rs, err := root.Logical().Read("auth/" + mount + "/role/airlock-worker/role-id")
	require.NoError(t, err)
	roleID := rs.Data["role_id"].(string)
	ss, err := root.Logical().Write("auth/"+mount+"/role/airlock-worker/secret-id", nil)
	require.NoError(t, err)
	secretID := ss.Data["secret_id"].(string)
	cfg := vault.Config{Address: stack.VaultAddr}

	t.Run("logs in and logs in again at the max TTL", func(t *testing.T) {
		var mu sync.Mutex
		var failures []error
		s, err := vault.Login(ctx, cfg, vault.LoginConfig{
			Method: vault.AuthAppRole, Mount: mount, RoleIDFile: writeSecretFile(t, roleID), SecretIDFile: writeSecretFile(t, secretID),
			OnError: func(err error) { mu.Lock(); failures = append(failures, err); mu.Unlock() },
		})
		require.NoError(t, err)
		defer s.Close()
		assert.ElementsMatch(t, []string{"default", policy}, selfPolicies(t, s))
		first := s.Accessor()

		// The token dies at 5s; the session must have replaced it by then.
		require.Eventually(t, func() bool { return !accessorAlive(t, first) },
			20*time.Second, 100*time.Millisecond, "the first token reaches its max TTL")
		assert.GreaterOrEqual(t, s.Logins(), 2)
		assert.NotEqual(t, first, s.Accessor())
		assert.True(t, sessionAlive(t, s), "the current token is alive")
		mu.Lock()
		for _, err := range failures {
			assertNoSecret(t, err, secretID)
		}
		mu.Unlock()
	})

	t.Run("role id and secret id from the environment", func(t *testing.T) {
		t.Setenv("VAULT_ROLE_ID", roleID)
		t.Setenv("VAULT_SECRET_ID", secretID)
		s, err := vault.Login(ctx, cfg, vault.LoginConfig{Method: vault.AuthAppRole, Mount: mount})
		require.NoError(t, err)
		s.Close()
	})

	t.Run("a wrong secret id is refused without echoing it", func(t *testing.T) {
		wrong := "0b5e7e39-aaaa-bbbb-cccc-123456789abc"
		_, err := vault.Login(ctx, cfg, vault.LoginConfig{
			Method: vault.AuthAppRole, Mount: mount, RoleID: roleID, SecretIDFile: writeSecretFile(t, wrong),
		})
		require.ErrorIs(t, err, vault.ErrLogin)
		assertNoSecret(t, err, wrong, secretID)
		t.Log(err)
	})

	t.Run("missing secret id", func(t *testing.T) {
		t.Setenv("VAULT_SECRET_ID", "")
		_, err := vault.Login(ctx, cfg, vault.LoginConfig{Method: vault.AuthAppRole, Mount: mount, RoleID: roleID})
		assert.ErrorContains(t, err, "no secret id")
		_, err = vault.Login(ctx, cfg, vault.LoginConfig{Method: vault.AuthAppRole, Mount: mount, RoleID: roleID, SecretIDFile: "/nonexistent"})
		assert.ErrorIs(t, err, os.ErrNotExist)
	})
}

func TestLoginKubernetes(t *testing.T) {
	verifyNoLeaks(t)
	ctx := t.Context()
	cs, err := kubernetes.NewForConfig(stack.RestConfig)
	require.NoError(t, err)
	ns := uniq("vault-auth")
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	for _, sa := range []string{"vault-reviewer", "airlock-worker", "intruder"} {
		_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	// Vault reviews the JWTs it is shown with the TokenReview API.
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-vault-tokenreview"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "vault-reviewer", Namespace: ns}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	jwt := func(sa string) string {
		t.Helper()
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		return tr.Status.Token
	}

	root := rootClient(t)
	mount, policy := uniq("kubernetes"), uniq("login")
	require.NoError(t, root.Sys().EnableAuthWithOptions(mount, &api.EnableAuthOptions{Type: "kubernetes"}))
	require.NoError(t, root.Sys().PutPolicy(policy, loginPolicy))
	_, err = root.Logical().Write("auth/"+mount+"/config", map[string]any{
		"kubernetes_host":      stack.RestConfig.Host,
		"kubernetes_ca_cert":   string(stack.RestConfig.CAData),
		"token_reviewer_jwt":   jwt("vault-reviewer"),
		"disable_local_ca_jwt": true,
	})
	require.NoError(t, err)
	_, err = root.Logical().Write("auth/"+mount+"/role/airlock-worker", map[string]any{
		"bound_service_account_names":      "airlock-worker",
		"bound_service_account_namespaces": ns,
		"token_policies":                   policy,
		"token_ttl":                        "1h",
	})
	require.NoError(t, err)
	cfg := vault.Config{Address: stack.VaultAddr}

	t.Run("the bound service account logs in", func(t *testing.T) {
		s, err := vault.Login(ctx, cfg, vault.LoginConfig{Method: vault.AuthKubernetes, Mount: mount, Role: "airlock-worker", JWTFile: writeSecretFile(t, jwt("airlock-worker"))})
		require.NoError(t, err)
		defer s.Close()
		assert.ElementsMatch(t, []string{"default", policy}, selfPolicies(t, s))
		looked, err := root.Auth().Token().LookupAccessor(s.Accessor())
		require.NoError(t, err)
		meta := looked.Data["meta"].(map[string]any)
		assert.Equal(t, "airlock-worker", meta["service_account_name"])
		assert.Equal(t, ns, meta["service_account_namespace"])
	})

	t.Run("another service account is refused", func(t *testing.T) {
		token := jwt("intruder")
		_, err := vault.Login(ctx, cfg, vault.LoginConfig{Method: vault.AuthKubernetes, Mount: mount, Role: "airlock-worker", JWTFile: writeSecretFile(t, token)})
		require.ErrorIs(t, err, vault.ErrLogin)
		assertNoSecret(t, err, token)
		t.Log(err)
	})

	t.Run("a forged token is refused", func(t *testing.T) {
		token := jwt("airlock-worker")
		forged := token[:len(token)-8] + "AAAAAAAA"
		_, err := vault.Login(ctx, cfg, vault.LoginConfig{Method: vault.AuthKubernetes, Mount: mount, Role: "airlock-worker", JWTFile: writeSecretFile(t, forged)})
		require.ErrorIs(t, err, vault.ErrLogin)
		assertNoSecret(t, err, forged, token)
		t.Log(err)
	})

	t.Run("no role, no token file", func(t *testing.T) {
		_, err := vault.Login(ctx, cfg, vault.LoginConfig{Method: vault.AuthKubernetes, Mount: mount})
		assert.ErrorContains(t, err, "no role")
		_, err = vault.Login(ctx, cfg, vault.LoginConfig{Method: vault.AuthKubernetes, Mount: mount, Role: "airlock-worker", JWTFile: filepath.Join(t.TempDir(), "missing")})
		assert.True(t, errors.Is(err, os.ErrNotExist), "%v", err)
	})
}
