package devstack

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// startVault runs Vault in dev mode: unsealed, in memory, with a root token
// chosen here so the caller knows it without parsing output.
func (s *Stack) startVault(ctx context.Context) error {
	ports, err := freePorts(1)
	if err != nil {
		return fmt.Errorf("start vault: %w", err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", ports[0])
	s.VaultAddr = "http://" + listen
	s.VaultToken = "root-" + randomHex(16)
	p := s.newProcess(ProcVault, "vault",
		"server", "-dev",
		"-dev-root-token-id="+s.VaultToken,
		"-dev-listen-address="+listen,
		// Keep ~/.vault-token untouched (HOME is in Dir anyway).
		"-dev-no-store-token",
		"-log-level=warn",
	)
	p.ready = func(ctx context.Context) error { return httpOK(ctx, http.DefaultClient, s.VaultAddr+"/v1/sys/health") }
	return s.launch(ctx, p)
}

// httpOK passes when GET url answers 200.
func httpOK(ctx context.Context, c *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
