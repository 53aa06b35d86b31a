package contract_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The contract is what agents, the Slack handler and the CLI's read paths
// link: they must not drag in the worker's Kubernetes and Vault clients.
func TestLeafPackagesLinkNoInfrastructureClients(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	forbidden := []string{
		"k8s.io/client-go/",
		"github.com/hashicorp/vault/api",
		"github.com/airlockhq/airlock/activities",
		"github.com/airlockhq/airlock/k8s",
		"github.com/airlockhq/airlock/vault",
		"github.com/airlockhq/airlock/workflows",
	}
	for _, pkg := range []string{"../contract", "../approval", "../starter"} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		require.NoError(t, err, "%s", out)
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range forbidden {
				if dep == f || strings.HasPrefix(dep, f) && (strings.HasSuffix(f, "/") || dep[len(f)] == '/') {
					t.Errorf("%s links %s", pkg, dep)
				}
			}
		}
	}
}
