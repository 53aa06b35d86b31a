package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"
)

// AuthMethod is how the worker authenticates to Vault.
type AuthMethod string

// Auth methods Login supports.
const (
	// AuthToken uses a token given to the worker (Config.Token or $VAULT_TOKEN).
	AuthToken AuthMethod = "token"
	// AuthKubernetes logs in with the Pod's service-account JWT.
	AuthKubernetes AuthMethod = "kubernetes"
	// AuthAppRole logs in with a role id and a secret id.
	AuthAppRole AuthMethod = "approle"
)

// DefaultServiceAccountTokenFile is where Kubernetes mounts a Pod's
// service-account token.
const DefaultServiceAccountTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// LoginConfig says how the worker logs in. It holds no secret values, only
// where to read them, so it is safe to print.
type LoginConfig struct {
	// Method is the auth method. Default: AuthToken.
	Method AuthMethod
	// Mount is the auth method's mount path. Default: the method's name
	// ("kubernetes", "approle").
	Mount string
	// Role is the Vault role to log in as (kubernetes only).
	Role string
	// JWTFile holds the service-account JWT (kubernetes). It is read at
	// every login, so a rotated projected token is picked up.
	// Default: DefaultServiceAccountTokenFile.
	JWTFile string
	// RoleID is the AppRole role id (not a secret). Default: the contents of
	// RoleIDFile, else $VAULT_ROLE_ID.
	RoleID string
	// RoleIDFile holds the AppRole role id.
	RoleIDFile string
	// SecretIDFile holds the AppRole secret id; read at every login.
	// Default: $VAULT_SECRET_ID.
	SecretIDFile string
	// OnError receives renewal and re-login failures of the worker's own
	// token. They carry no secret. Default: logged with slog.Default().
	OnError func(error)
}

// Session is the worker's own authenticated identity in Vault: a Broker
// whose token Login obtained and a goroutine that keeps that token alive
// (a LifetimeWatcher) and logs in again when it reaches its max TTL. Close
// stops the goroutine.
type Session struct {
	*Broker

	lc     LoginConfig
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	accessor string
	logins   int
}

// ErrLogin marks a refused login: bad role, bad credentials, or an identity
// the role does not bind. Retrying does not help until the configuration
// changes.
var ErrLogin = errors.New("vault login refused")

// Login authenticates the worker with the method lc names and returns a
// Broker using the resulting token, kept alive until Close. With AuthToken
// the given token is used as it is; it is renewed if renewable, and cannot
// be replaced once it reaches its max TTL.
func Login(ctx context.Context, cfg Config, lc LoginConfig) (*Session, error) {
	if lc.Method == "" {
		lc.Method = AuthToken
	}
	if lc.OnError == nil {
		lc.OnError = func(err error) { slog.Default().Warn("vault: worker token", "error", err) }
	}
	switch lc.Method {
	case AuthToken:
	case AuthKubernetes:
		if lc.Role == "" {
			return nil, errors.New("vault login: kubernetes: no role")
		}
		if lc.JWTFile == "" {
			lc.JWTFile = DefaultServiceAccountTokenFile
		}
	case AuthAppRole:
		if lc.RoleID == "" && lc.RoleIDFile != "" {
			id, err := readSecretFile(lc.RoleIDFile)
			if err != nil {
				return nil, fmt.Errorf("vault login: approle: role id: %w", err)
			}
			lc.RoleID = id
		}
		if lc.RoleID == "" {
			lc.RoleID = os.Getenv("VAULT_ROLE_ID")
		}
		if lc.RoleID == "" {
			return nil, errors.New("vault login: approle: no role id (set RoleID, RoleIDFile or $VAULT_ROLE_ID)")
		}
	default:
		return nil, fmt.Errorf("vault login: unknown auth method %q (want token, kubernetes or approle)", lc.Method)
	}
	if lc.Mount == "" {
		lc.Mount = string(lc.Method)
	}
	lc.Mount = strings.Trim(lc.Mount, "/")

	var (
		b      *Broker
		secret *api.Secret
		err    error
	)
	if lc.Method == AuthToken {
		if b, err = NewBroker(cfg); err != nil {
			return nil, err
		}
		if secret, err = b.selfAuth(ctx); err != nil {
			return nil, err
		}
	} else {
		// A placeholder passes NewBroker's check; the login replaces it
		// before the broker is used.
		cfg.Token = "login-pending"
		if b, err = NewBroker(cfg); err != nil {
			return nil, err
		}
		b.client.ClearToken()
		if secret, err = b.login(ctx, lc); err != nil {
			return nil, err
		}
		b.client.SetToken(secret.Auth.ClientToken)
	}
	wctx, cancel := context.WithCancel(context.Background())
	s := &Session{Broker: b, lc: lc, cancel: cancel, done: make(chan struct{}), accessor: secret.Auth.Accessor, logins: 1}
	go s.keepAlive(wctx, secret)
	return s, nil
}

// Close stops renewing the worker's token and waits for the goroutine to
// end. It does not revoke the token: agent tokens are orphans and action
// tokens belong to their agent's tree, so they outlive it. (Tokens from
// Broker.IssueToken are the worker token's children: they die when it
// expires.) Close is idempotent.
func (s *Session) Close() {
	s.cancel()
	<-s.done
}

// Accessor is the accessor of the worker's current token.
func (s *Session) Accessor() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accessor
}

// Logins counts successful logins, the first included.
func (s *Session) Logins() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins
}

// keepAlive owns the worker token's LifetimeWatcher: it renews the token,
// and once renewal can no longer extend it, logs in again (retrying with
// backoff) and watches the new token.
func (s *Session) keepAlive(ctx context.Context, secret *api.Secret) {
	defer close(s.done)
	for {
		if secret.Auth.LeaseDuration == 0 {
			// Never expires (a root or non-expiring token): nothing to do.
			<-ctx.Done()
			return
		}
		w, err := s.client.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: secret})
		if err != nil {
			s.lc.OnError(fmt.Errorf("renew worker token: %w", err))
			return
		}
		go w.Start()
		err = s.watch(ctx, w)
		w.Stop()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.lc.OnError(fmt.Errorf("renew worker token: %w", err))
		}
		if s.lc.Method == AuthToken {
			s.lc.OnError(errors.New("worker token reached the end of its life and cannot be replaced: use kubernetes or approle login"))
			<-ctx.Done()
			return
		}
		if secret = s.relogin(ctx); secret == nil {
			return
		}
	}
}

// watch waits until the watcher is done or ctx ends.
func (s *Session) watch(ctx context.Context, w *api.LifetimeWatcher) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-w.DoneCh():
			return err
		case <-w.RenewCh():
		}
	}
}

// relogin logs in until it succeeds or ctx ends (then it returns nil).
func (s *Session) relogin(ctx context.Context) *api.Secret {
	delay := time.Second
	for {
		secret, err := s.login(ctx, s.lc)
		if err == nil {
			s.client.SetToken(secret.Auth.ClientToken)
			s.mu.Lock()
			s.accessor = secret.Auth.Accessor
			s.logins++
			s.mu.Unlock()
			return secret
		}
		s.lc.OnError(err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(jitter(delay)):
		}
		delay = min(2*delay, time.Minute)
	}
}

// login calls the auth method's login endpoint with a token-less clone.
func (b *Broker) login(ctx context.Context, lc LoginConfig) (*api.Secret, error) {
	op := "vault login: " + string(lc.Method)
	var body map[string]any
	switch lc.Method {
	case AuthKubernetes:
		jwt, err := readSecretFile(lc.JWTFile)
		if err != nil {
			return nil, fmt.Errorf("%s: service-account token: %w", op, err)
		}
		body = map[string]any{"role": lc.Role, "jwt": jwt}
	case AuthAppRole:
		secretID := os.Getenv("VAULT_SECRET_ID")
		if lc.SecretIDFile != "" {
			var err error
			if secretID, err = readSecretFile(lc.SecretIDFile); err != nil {
				return nil, fmt.Errorf("%s: secret id: %w", op, err)
			}
		}
		if secretID == "" {
			return nil, fmt.Errorf("%s: no secret id (set SecretIDFile or $VAULT_SECRET_ID)", op)
		}
		body = map[string]any{"role_id": lc.RoleID, "secret_id": secretID}
	default:
		return nil, fmt.Errorf("%s: not a login method", op)
	}
	c, err := b.client.Clone()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	c.ClearToken()
	s, err := c.Logical().WriteWithContext(ctx, "auth/"+lc.Mount+"/login", body)
	if err != nil {
		var re *api.ResponseError
		if errors.As(err, &re) && re.StatusCode < 500 {
			return nil, fmt.Errorf("%s: %w: HTTP %d: %s", op, ErrLogin, re.StatusCode, strings.Join(re.Errors, "; "))
		}
		return nil, classify(op, err)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return nil, fmt.Errorf("%s: empty response", op)
	}
	return s, nil
}

// selfAuth describes the broker's given token as a login would, so the
// LifetimeWatcher can renew it.
func (b *Broker) selfAuth(ctx context.Context) (*api.Secret, error) {
	s, err := b.client.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return nil, classify("vault login: token: lookup self", err)
	}
	ttl, _ := s.TokenTTL()
	renewable, _ := s.TokenIsRenewable()
	accessor, _ := s.TokenAccessor()
	return &api.Secret{Auth: &api.SecretAuth{
		ClientToken:   b.client.Token(),
		Accessor:      accessor,
		LeaseDuration: int(ttl.Seconds()),
		Renewable:     renewable,
	}}, nil
}

// readSecretFile reads a one-line credential file. Errors name the file,
// never its contents.
func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return v, nil
}
