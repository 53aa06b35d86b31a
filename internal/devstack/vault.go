package devstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/vault/api"
)

// startVault runs Vault in dev mode: unsealed, in memory, with a root token
// chosen here so the caller knows it without parsing output.
func (s *Stack) startVault(ctx context.Context) error {
	if s.opts.VaultPersistent {
		return s.launch(ctx, 1, s.persistentVaultProcess)
	}
	s.VaultToken = "root-" + randomHex(16)
	return s.launch(ctx, 1, s.vaultProcess)
}

// persistentVaultProcess is a non-dev Vault on ports[0] with file storage in
// Dir. Its readiness check initialises it the first time (one unseal key,
// kept in memory for this stack only) and unseals it on every start, so a
// restarted Vault comes back with everything it had.
func (s *Stack) persistentVaultProcess(ports []int) (*process, error) {
	addr := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	s.VaultAddr = addr
	dir := filepath.Join(s.Dir, "vault")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`storage "file" {
  path = %q
}
listener "tcp" {
  address     = "127.0.0.1:%d"
  tls_disable = true
}
api_addr      = %q
disable_mlock = true
ui            = false
`, filepath.Join(dir, "data"), ports[0], addr)
	cfgPath := filepath.Join(dir, "vault.hcl")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	p := s.newProcess(ProcVault, "vault", "server", "-config="+cfgPath, "-log-level=warn")
	p.ready = func(ctx context.Context) error { return s.initAndUnseal(ctx, addr) }
	return p, nil
}

// initAndUnseal brings a persistent Vault to a usable state.
func (s *Stack) initAndUnseal(ctx context.Context, addr string) error {
	cfg := api.DefaultConfig()
	cfg.Address = addr
	cfg.Timeout = 5 * time.Second
	c, err := api.NewClient(cfg)
	if err != nil {
		return err
	}
	inited, err := c.Sys().InitStatusWithContext(ctx)
	if err != nil {
		return err
	}
	if !inited {
		resp, err := c.Sys().InitWithContext(ctx, &api.InitRequest{SecretShares: 1, SecretThreshold: 1})
		if err != nil {
			return fmt.Errorf("init vault: %w", err)
		}
		s.vaultUnsealKey, s.VaultToken = resp.KeysB64[0], resp.RootToken
	}
	st, err := c.Sys().UnsealWithContext(ctx, s.vaultUnsealKey)
	if err != nil {
		return fmt.Errorf("unseal vault: %w", err)
	}
	if st.Sealed {
		return errors.New("vault is still sealed")
	}
	if err := httpOK(ctx, http.DefaultClient, addr+"/v1/sys/health"); err != nil {
		return err // active once health answers 200
	}
	// What dev mode has and Airlock expects: KV v2 at secret/.
	c.SetToken(s.VaultToken)
	mounts, err := c.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return err
	}
	if _, ok := mounts["secret/"]; !ok {
		if err := c.Sys().MountWithContext(ctx, "secret", &api.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
			return err
		}
	}
	return enableVaultAudit(ctx, addr, s.VaultToken, s.VaultAuditLog)
}

// vaultProcess is Vault in dev mode listening on ports[0].
func (s *Stack) vaultProcess(ports []int) (*process, error) {
	listen := fmt.Sprintf("127.0.0.1:%d", ports[0])
	addr := "http://" + listen
	s.VaultAddr = addr
	p := s.newProcess(ProcVault, "vault",
		"server", "-dev",
		"-dev-root-token-id="+s.VaultToken,
		"-dev-listen-address="+listen,
		// Keep ~/.vault-token untouched (HOME is in Dir anyway).
		"-dev-no-store-token",
		"-log-level=warn",
	)
	p.ready = func(ctx context.Context) error {
		if err := httpOK(ctx, http.DefaultClient, addr+"/v1/sys/health"); err != nil {
			return err
		}
		return enableVaultAudit(ctx, addr, s.VaultToken, s.VaultAuditLog) // again after a restart: dev mode forgets
	}
	return p, nil
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
