package infraaudit_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/infraaudit"
)

const (
	wf       = "cycle/e2e/c1"
	accessor = "kJbd5mH2mvyTHqjCKS2j3QZp"
	job      = "airlock-c1-0-abcdef"
	ns       = "airlock-e2e"
	// tokenHMAC is how Vault logs a token: never the token itself.
	tokenHMAC = "hmac-sha256:5d3f1b9e1b1fd0a2c3e4"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func trail() []contract.AuditEntry {
	var tr []contract.AuditEntry
	tr = contract.AppendAudit(tr, t0, contract.AuditCycle, nil, "cycle started", nil)
	i := 0
	tr = contract.AppendAudit(tr, t0.Add(100*time.Millisecond), contract.AuditLease, &i, "credential leased",
		map[string]any{"accessor": accessor, "job": job, "secret": job + "-env", "namespace": ns})
	tr = contract.AppendAudit(tr, t0.Add(2*time.Second), contract.AuditLease, &i, "credential revoked", map[string]any{"accessor": accessor})
	return tr
}

// vaultLog is what Vault's file device writes (hmac_accessor=false, the
// token mount's "accessor" request key not HMACed): token ids and secret
// data are HMACs.
var vaultLog = strings.Join([]string{
	`{"time":"2026-05-01T12:00:00.05Z","type":"request","auth":{"accessor":"workerAcc","display_name":"token","client_token":"` + tokenHMAC + `"},"request":{"operation":"update","path":"auth/token/create/airlock-action-read"}}`,
	`{"time":"2026-05-01T12:00:00.06Z","type":"response","auth":{"accessor":"workerAcc","display_name":"token","client_token":"` + tokenHMAC + `"},"request":{"operation":"update","path":"auth/token/create/airlock-action-read"},"response":{"auth":{"accessor":"` + accessor + `","client_token":"hmac-sha256:aaaa","policies":["airlock-e2e-read"],"token_ttl":10}}}`,
	`not json at all`,
	`{"time":"2026-05-01T12:00:00.08Z","type":"response","auth":{"accessor":"` + accessor + `","display_name":"token","client_token":"hmac-sha256:aaaa"},"request":{"operation":"read","path":"secret/data/airlock/airlock-e2e-read/payments-api"},"response":{"data":{"data":{"token":"hmac-sha256:bbbb"}}}}`,
	`{"time":"2026-05-01T12:00:00.09Z","type":"response","auth":{"accessor":"workerAcc","display_name":"token"},"request":{"operation":"update","path":"auth/token/renew-accessor","data":{"accessor":"` + accessor + `","increment":"hmac-sha256:cc"}},"response":{"auth":{"accessor":"` + accessor + `","client_token":"hmac-sha256:aaaa","token_ttl":10}}}`,
	`{"time":"2026-05-01T12:00:01.9Z","type":"response","auth":{"accessor":"workerAcc","display_name":"token"},"request":{"operation":"update","path":"auth/token/revoke-accessor","data":{"accessor":"` + accessor + `"}}}`,
	`{"time":"2026-05-01T12:00:01.95Z","type":"response","auth":{"accessor":"otherAcc","display_name":"token"},"request":{"operation":"read","path":"secret/data/other"}}`,
	``,
}, "\n")

var kubeLog = strings.Join([]string{
	`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","stage":"ResponseComplete","verb":"create","user":{"username":"airlock-admin"},"objectRef":{"resource":"jobs","namespace":"` + ns + `","name":"` + job + `","apiGroup":"batch"},"responseStatus":{"code":201},"stageTimestamp":"2026-05-01T12:00:00.070000Z"}`,
	`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","stage":"ResponseComplete","verb":"create","user":{"username":"airlock-admin"},"objectRef":{"resource":"secrets","namespace":"` + ns + `","name":"` + job + `-env"},"responseStatus":{"code":201},"stageTimestamp":"2026-05-01T12:00:00.090000Z"}`,
	`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","stage":"ResponseComplete","verb":"patch","user":{"username":"kwok"},"objectRef":{"resource":"pods","subresource":"status","namespace":"` + ns + `","name":"` + job + `-x7k2p"},"responseStatus":{"code":200},"stageTimestamp":"2026-05-01T12:00:00.500000Z"}`,
	`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","stage":"ResponseComplete","verb":"patch","user":{"username":"kwok"},"objectRef":{"resource":"pods","subresource":"status","namespace":"` + ns + `","name":"` + job + `-x7k2p"},"responseStatus":{"code":200},"stageTimestamp":"2026-05-01T12:00:00.600000Z"}`,
	`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","stage":"ResponseComplete","verb":"list","user":{"username":"airlock-admin"},"objectRef":{"resource":"pods","namespace":"` + ns + `"},"stageTimestamp":"2026-05-01T12:00:00.700000Z"}`,
	`{"kind":"Event","stage":"ResponseComplete","verb":"delete","user":{"username":"airlock-admin"},"objectRef":{"resource":"jobs","namespace":"other","name":"` + job + `"},"stageTimestamp":"2026-05-01T12:00:01.000000Z"}`,
	`{"kind":"Event","stage":"ResponseComplete","verb":"delete","user":{"username":"airlock-admin"},"objectRef":{"resource":"secrets","namespace":"` + ns + `","name":"` + job + `-env"},"responseStatus":{"code":200},"stageTimestamp":"2026-05-01T12:00:01.950000Z"}`,
	`{"kind":"Event","stage":"ResponseComplete","verb":"delete","user":{"username":"system:serviceaccount:kube-system:ttl-after-finished-controller"},"objectRef":{"resource":"jobs","namespace":"` + ns + `","name":"` + job + `","apiGroup":"batch"},"responseStatus":{"code":200},"stageTimestamp":"2026-05-01T13:00:02.000000Z"}`,
	`{"kind":"Event","stage":"ResponseComplete","verb":"create","user":{"username":"airlock-admin"},"objectRef":{"resource":"jobs","namespace":"` + ns + `","name":"` + job + `"},"stageTimestamp":"2026-05-01T11:00:00.000000Z"}`,
	`{"kind":"Nope"}`,
}, "\n")

func TestBuildJoinsTrailVaultAndKubernetesInTimeOrder(t *testing.T) {
	r, err := infraaudit.Build(wf, trail(), infraaudit.Options{VaultLog: strings.NewReader(vaultLog), KubeLog: strings.NewReader(kubeLog)})
	require.NoError(t, err)
	var got []string
	for _, e := range r.Events {
		got = append(got, e.Source+" | "+e.Actor+" | "+e.What)
	}
	want := []string{
		"trail |  | cycle: cycle started",
		"vault | token (accessor workerAcc) | token issued via auth/token/create/airlock-action-read: accessor " + accessor + ", policies airlock-e2e-read, ttl 10s",
		"kubernetes | airlock-admin | create jobs " + ns + "/" + job + " → 201",
		"vault | token (accessor " + accessor + ") | used: read secret/data/airlock/airlock-e2e-read/payments-api with token accessor " + accessor,
		"vault | token (accessor workerAcc) | token renewed: accessor " + accessor + " (auth/token/renew-accessor)",
		"kubernetes | airlock-admin | create secrets " + ns + "/" + job + "-env → 201",
		"trail |  | lease: credential leased (accessor " + accessor + ")",
		"kubernetes | kwok | patch pods/status " + ns + "/" + job + "-x7k2p → 200",
		"vault | token (accessor workerAcc) | token revoked: accessor " + accessor + " (auth/token/revoke-accessor)",
		"kubernetes | airlock-admin | delete secrets " + ns + "/" + job + "-env → 200",
		"trail |  | lease: credential revoked (accessor " + accessor + ")",
		"kubernetes | system:serviceaccount:kube-system:ttl-after-finished-controller | delete jobs " + ns + "/" + job + " → 200",
	}
	assert.Equal(t, want, got)
	assert.Equal(t, 2, r.Events[7].Count, "identical status patches fold into one line")
	assert.Equal(t, infraaudit.Stats{Lines: 7, Matched: 4, Malformed: 1}, *r.Vault)
	assert.Equal(t, infraaudit.Stats{Lines: 10, Matched: 6, Malformed: 1}, *r.Kube, "a line before the cycle (11:00) is not matched")

	var out bytes.Buffer
	require.NoError(t, r.Print(&out))
	assert.Contains(t, out.String(), "token accessors: "+accessor)
	assert.Contains(t, out.String(), "(×2)")
	assert.Contains(t, out.String(), "vault audit log: 7 lines, 4 matched, 1 malformed skipped")
	assert.NotContains(t, out.String(), "hmac-sha256", "no token, not even its HMAC, is printed")
}

func TestHMACedAccessorsAreReportedNotSilentlyUnmatched(t *testing.T) {
	line := `{"time":"2026-05-01T12:00:01.9Z","type":"response","auth":{"accessor":"hmac-sha256:1234","display_name":"token"},"request":{"operation":"update","path":"auth/token/revoke-accessor","data":{"accessor":"hmac-sha256:5678"}}}`
	_, st, err := infraaudit.ReadVault(strings.NewReader(line), infraaudit.SubjectOf(wf, trail()))
	require.NoError(t, err)
	assert.Equal(t, 1, st.HMACedAccessors)
	assert.Contains(t, st.String(), "hmac_accessor=false")
}

func TestBuildNeedsALog(t *testing.T) {
	_, err := infraaudit.Build(wf, trail(), infraaudit.Options{})
	require.ErrorIs(t, err, infraaudit.ErrNoLogs)
}

func TestAnOverlongLineIsAnError(t *testing.T) {
	_, _, err := infraaudit.ReadKube(strings.NewReader(strings.Repeat("x", 17<<20)), infraaudit.Subject{})
	require.Error(t, err)
}
