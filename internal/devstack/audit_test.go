package devstack_test

import (
	"os"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Both audit logs record a credential's and a Secret's life by accessor
// and name, and neither holds the token or the Secret's value.
func TestAuditLogsRecordAccessorsAndObjectsNeverSecrets(t *testing.T) {
	ctx := t.Context()
	cfg := vault.DefaultConfig()
	cfg.Address = stack.VaultAddr
	c, err := vault.NewClient(cfg)
	require.NoError(t, err)
	c.SetToken(stack.VaultToken)
	child, err := c.Auth().Token().CreateWithContext(ctx, &vault.TokenCreateRequest{Policies: []string{"default"}, TTL: "1m"})
	require.NoError(t, err)
	token, accessor := child.Auth.ClientToken, child.Auth.Accessor
	use, err := c.Clone()
	require.NoError(t, err)
	use.SetToken(token)
	_, err = use.Auth().Token().LookupSelfWithContext(ctx)
	require.NoError(t, err)
	require.NoError(t, c.Auth().Token().RevokeAccessorWithContext(ctx, accessor))

	vlog := readFile(t, stack.VaultAuditLog)
	assert.Contains(t, vlog, `"accessor":"`+accessor+`"`, "the new token's accessor, in clear")
	assert.Contains(t, vlog, `"path":"auth/token/revoke-accessor"`)
	assert.Regexp(t, `"path":"auth/token/revoke-accessor"[^\n]*"accessor":"`+accessor+`"|"accessor":"`+accessor+`"[^\n]*"path":"auth/token/revoke-accessor"`, vlog,
		"the revoked accessor is not HMACed (audit_non_hmac_request_keys)")
	assert.NotContains(t, vlog, token, "the token itself is HMACed")
	assert.NotContains(t, vlog, stack.VaultToken, "the root token is HMACed")

	cs, err := kubernetes.NewForConfig(stack.RestConfig)
	require.NoError(t, err)
	const value = "kube-audit-s3cr3t-value"
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "audit-probe", Namespace: "default"}, StringData: map[string]string{"v": value}}
	_, err = cs.CoreV1().Secrets("default").Create(ctx, sec, metav1.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, cs.CoreV1().Secrets("default").Delete(ctx, "audit-probe", metav1.DeleteOptions{}))
	var klog string
	require.Eventually(t, func() bool {
		klog = readFile(t, stack.KubeAuditLog)
		return strings.Contains(klog, `"verb":"delete"`) && strings.Contains(klog, `"name":"audit-probe"`)
	}, 10*time.Second, 50*time.Millisecond, "the Secret's delete is in the apiserver audit log")
	assert.Contains(t, klog, `"verb":"create"`)
	assert.NotContains(t, klog, value, "Secrets are audited at Metadata")
	assert.NotContains(t, klog, "a3ViZS1hdWRpdC1zM2NyM3QtdmFsdWU", "not even base64-encoded")
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}
