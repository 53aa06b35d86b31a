package k8s

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if ips, ok := f[host]; ok {
		return ips, nil
	}
	return nil, errors.New("no such host")
}

// A Job that carries a Vault token reaches its VAULT_ADDR, and only that
// address and port; a Job without a token, or with an address that does
// not resolve, gets no rule at all (fail closed).
func TestVaultEgress(t *testing.T) {
	res := fakeResolver{"vault.internal": {netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("10.1.2.4")}}
	tests := map[string]struct {
		addr      string
		secretEnv []string
		want      []EgressRule
	}{
		"ip and port":                      {addr: "http://10.87.0.1:8200", secretEnv: []string{"VAULT_TOKEN"}, want: []EgressRule{{CIDR: "10.87.0.1/32", Port: 8200}}},
		"https without port":               {addr: "https://192.0.2.7", secretEnv: []string{"VAULT_TOKEN"}, want: []EgressRule{{CIDR: "192.0.2.7/32", Port: 443}}},
		"ipv6":                             {addr: "http://[2001:db8::1]:8200", secretEnv: []string{"VAULT_TOKEN"}, want: []EgressRule{{CIDR: "2001:db8::1/128", Port: 8200}}},
		"host name resolved by the worker": {addr: "https://vault.internal:8200", secretEnv: []string{"VAULT_TOKEN"}, want: []EgressRule{{CIDR: "10.1.2.3/32", Port: 8200}, {CIDR: "10.1.2.4/32", Port: 8200}}},
		"name that does not resolve":       {addr: "http://vault.example:8200", secretEnv: []string{"VAULT_TOKEN"}},
		"no token, no vault":               {addr: "http://10.87.0.1:8200"},
		"no address":                       {secretEnv: []string{"VAULT_TOKEN"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := baseSpec()
			s.SecretEnv = tc.secretEnv
			s.Env = map[string]string{}
			if tc.addr != "" {
				s.Env["VAULT_ADDR"] = tc.addr
			}
			job, err := JobFor(s)
			require.NoError(t, err)
			got := vaultEgress(t.Context(), res, job)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

// The Vault rule is added to the catalog's list in the Job's
// NetworkPolicy, once, next to the action's own rules.
func TestCreateNetworkPolicyLetsTheTokenReachVault(t *testing.T) {
	ctx := t.Context()
	cs := fakeClientset()
	r := NewRunner(cs, WithResolver(fakeResolver{}))
	s := baseSpec()
	s.SecretEnv = []string{"VAULT_TOKEN"}
	s.Env = map[string]string{"VAULT_ADDR": "http://10.87.0.1:8200"}
	s.Egress = []EgressRule{{CIDR: "192.0.2.0/24", Port: 443}}
	job, err := r.CreateJob(ctx, s)
	require.NoError(t, err)
	require.NoError(t, r.CreateNetworkPolicy(ctx, job, s.Egress))
	require.NoError(t, r.CreateNetworkPolicy(ctx, job, s.Egress)) // idempotent
	np, err := cs.NetworkingV1().NetworkPolicies(job.Namespace).Get(ctx, NetworkPolicyName(job.Name), metav1.GetOptions{})
	require.NoError(t, err)
	want := NetworkPolicyFor(job, []EgressRule{{CIDR: "192.0.2.0/24", Port: 443}, {CIDR: "10.87.0.1/32", Port: 8200}}).Spec
	if diff := cmp.Diff(want, np.Spec); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}
