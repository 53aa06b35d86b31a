package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// As returns a broker that sends its requests with the token in cred — an
// action's token — instead of the worker's. Secrets read through it are
// bounded by the action's policies, and their leases belong to that token:
// revoking the token (or its agent's tree) revokes them too.
func (b *Broker) As(cred Credential) (*Broker, error) {
	if cred.token == "" {
		return nil, errors.New("vault: credential has no token")
	}
	c, err := b.client.Clone()
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	c.SetToken(cred.token)
	return &Broker{client: c, role: b.role}, nil
}

// DefaultDatabaseMount is where the database secrets engine is mounted.
const DefaultDatabaseMount = "database"

// DBCredential is a dynamic database login. Username and password are
// hidden from fmt, slog and JSON like Credential's token; only the lease is
// shown.
type DBCredential struct {
	LeaseID   string        `json:"lease_id"`
	TTL       time.Duration `json:"ttl"`
	Renewable bool          `json:"renewable"`
	username  string
	password  string
}

// Username returns the generated database user, for the action's Secret only.
func (c DBCredential) Username() string { return c.username }

// Password returns the generated password, for the action's Secret only.
func (c DBCredential) Password() string { return c.password }

// Ref is the credential's lease as a LeaseRef.
func (c DBCredential) Ref() LeaseRef { return SecretLease(c.LeaseID) }

func (c DBCredential) String() string { return "db-credential(lease=" + c.LeaseID + ")" }

// GoString hides the values from %#v too.
func (c DBCredential) GoString() string { return c.String() }

// LogValue keeps the values out of slog output.
func (c DBCredential) LogValue() slog.Value {
	return slog.GroupValue(slog.String("lease_id", c.LeaseID), slog.Duration("ttl", c.TTL))
}

// MarshalJSON encodes only the lease.
func (c DBCredential) MarshalJSON() ([]byte, error) {
	type lease struct {
		LeaseID   string        `json:"lease_id"`
		TTL       time.Duration `json:"ttl"`
		Renewable bool          `json:"renewable"`
	}
	return json.Marshal(lease{c.LeaseID, c.TTL, c.Renewable})
}

// DatabaseCredential reads new credentials from a database role. role is
// "<mount>/<role>" or a bare role name under DefaultDatabaseMount. Call it
// on b.As(actionCredential) so the lease is the action's and the action's
// policy decides which roles it may use.
func (b *Broker) DatabaseCredential(ctx context.Context, role string) (DBCredential, error) {
	mount, name := splitRole(role)
	if name == "" {
		return DBCredential{}, errors.New("read database credentials: empty role")
	}
	s, err := b.client.Logical().ReadWithContext(ctx, mount+"/creds/"+name)
	if err != nil {
		return DBCredential{}, classify("read database credentials "+role, err)
	}
	if s == nil || s.LeaseID == "" {
		return DBCredential{}, fmt.Errorf("read database credentials %s: no such role", role)
	}
	user, _ := s.Data["username"].(string)
	pass, _ := s.Data["password"].(string)
	if user == "" || pass == "" {
		// Do not keep a lease nobody can use.
		_ = b.RevokeLease(context.WithoutCancel(ctx), s.LeaseID)
		return DBCredential{}, fmt.Errorf("read database credentials %s: response has no username or password", role)
	}
	return DBCredential{
		LeaseID:   s.LeaseID,
		TTL:       time.Duration(s.LeaseDuration) * time.Second,
		Renewable: s.Renewable,
		username:  user,
		password:  pass,
	}, nil
}

func splitRole(role string) (mount, name string) {
	role = strings.Trim(role, "/")
	if i := strings.LastIndex(role, "/"); i >= 0 {
		return role[:i], role[i+1:]
	}
	return DefaultDatabaseMount, role
}

// RevokeLease revokes a dynamic secret's lease now (for database
// credentials: Vault drops the user). Revoking a lease that is already gone
// succeeds.
func (b *Broker) RevokeLease(ctx context.Context, leaseID string) error {
	if leaseID == "" {
		return errors.New("revoke lease: empty lease id")
	}
	if err := b.client.Sys().RevokeWithContext(ctx, leaseID); err != nil {
		if isLeaseNotFound(err) {
			return nil
		}
		return classify("revoke lease", err)
	}
	return nil
}

// LeaseValid reports whether a dynamic secret's lease still exists
// (sys/leases/lookup).
func (b *Broker) LeaseValid(ctx context.Context, leaseID string) (bool, error) {
	if leaseID == "" {
		return false, errors.New("lookup lease: empty lease id")
	}
	s, err := b.client.Sys().LookupWithContext(ctx, leaseID)
	if err != nil {
		if isLeaseNotFound(err) {
			return false, nil
		}
		return false, classify("lookup lease", err)
	}
	return s != nil, nil
}

// KVSecret is the latest version of a KV v2 secret. Its values are hidden
// from fmt, slog and JSON; only the path, version and key names are shown.
type KVSecret struct {
	Path    string `json:"path"`
	Version int    `json:"version"`
	data    map[string]string
}

// Get returns one value, for the action's Secret only.
func (s KVSecret) Get(key string) (string, bool) {
	v, ok := s.data[key]
	return v, ok
}

// Keys returns the key names, sorted.
func (s KVSecret) Keys() []string { return slices.Sorted(maps.Keys(s.data)) }

// Data returns a copy of every value, for the action's Secret only.
func (s KVSecret) Data() map[string]string { return maps.Clone(s.data) }

func (s KVSecret) String() string {
	return fmt.Sprintf("kv-secret(path=%s version=%d keys=%s)", s.Path, s.Version, strings.Join(s.Keys(), ","))
}

// GoString hides the values from %#v too.
func (s KVSecret) GoString() string { return s.String() }

// LogValue keeps the values out of slog output.
func (s KVSecret) LogValue() slog.Value {
	return slog.GroupValue(slog.String("path", s.Path), slog.Int("version", s.Version), slog.Any("keys", s.Keys()))
}

// MarshalJSON encodes path, version and key names only.
func (s KVSecret) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Path    string   `json:"path"`
		Version int      `json:"version"`
		Keys    []string `json:"keys"`
	}{s.Path, s.Version, s.Keys()})
}

// ErrSecretNotFound is returned by ReadKV for a path with no live version.
var ErrSecretNotFound = errors.New("secret not found")

// ReadKV reads the latest version of a KV v2 secret. path is
// "<mount>/<path>" as the CLI's `vault kv get -mount` would split it at the
// first slash ("secret/team/db" reads team/db from the mount "secret").
// Values must be strings. Call it on b.As(actionCredential) so the action's
// policy decides what it may read.
func (b *Broker) ReadKV(ctx context.Context, path string) (KVSecret, error) {
	mount, rel, ok := strings.Cut(strings.Trim(path, "/"), "/")
	if !ok || rel == "" {
		return KVSecret{}, fmt.Errorf("read kv %s: want <mount>/<path>", path)
	}
	s, err := b.client.KVv2(mount).Get(ctx, rel)
	if err != nil {
		if errors.Is(err, api.ErrSecretNotFound) {
			return KVSecret{}, fmt.Errorf("read kv %s: %w", path, ErrSecretNotFound)
		}
		return KVSecret{}, classify("read kv "+path, err)
	}
	out := KVSecret{Path: path, data: make(map[string]string, len(s.Data))}
	if s.VersionMetadata != nil {
		out.Version = s.VersionMetadata.Version
	}
	for k, v := range s.Data {
		str, ok := v.(string)
		if !ok {
			// Name the key and type, never the value.
			return KVSecret{}, fmt.Errorf("read kv %s: value of %q is a %T, not a string", path, k, v)
		}
		out.data[k] = str
	}
	return out, nil
}

// DatabaseConfig connects the database secrets engine to a database. It is
// a development and test helper: production configures Vault with
// Terraform or deploy/vault.
type DatabaseConfig struct {
	// Mount of the database secrets engine; enabled if missing.
	// Default: DefaultDatabaseMount.
	Mount string
	// Name of the connection.
	Name string
	// Plugin. Default: postgresql-database-plugin.
	Plugin string
	// ConnectionURL with {{username}} and {{password}} placeholders, e.g.
	// postgresql://{{username}}:{{password}}@127.0.0.1:5432/postgres?sslmode=disable.
	ConnectionURL string
	// Username and Password of the account Vault manages users with. Vault
	// keeps them; they are never returned.
	Username, Password string
	// AllowedRoles may use this connection. Default: none.
	AllowedRoles []string
}

// String hides the password.
func (c DatabaseConfig) String() string {
	return fmt.Sprintf("database-config(%s/config/%s user=%s)", c.Mount, c.Name, c.Username)
}

// GoString hides the password from %#v too.
func (c DatabaseConfig) GoString() string { return c.String() }

// LogValue keeps the password out of slog output.
func (c DatabaseConfig) LogValue() slog.Value { return slog.StringValue(c.String()) }

// ConfigureDatabase enables the engine if needed and writes the connection;
// Vault verifies it by connecting.
func (b *Broker) ConfigureDatabase(ctx context.Context, dc DatabaseConfig) error {
	if dc.Mount == "" {
		dc.Mount = DefaultDatabaseMount
	}
	if dc.Plugin == "" {
		dc.Plugin = "postgresql-database-plugin"
	}
	if dc.Name == "" || dc.ConnectionURL == "" {
		return errors.New("configure database: name and connection URL are required")
	}
	if err := b.enableMount(ctx, dc.Mount, "database"); err != nil {
		return err
	}
	_, err := b.client.Logical().WriteWithContext(ctx, dc.Mount+"/config/"+dc.Name, map[string]any{
		"plugin_name":    dc.Plugin,
		"connection_url": dc.ConnectionURL,
		"username":       dc.Username,
		"password":       dc.Password,
		"allowed_roles":  strings.Join(dc.AllowedRoles, ","),
	})
	if err != nil {
		return redact(classify("configure database "+dc.Name, err), dc.Password)
	}
	return nil
}

// DatabaseRole is a role of the database secrets engine: how to create and
// drop a user.
type DatabaseRole struct {
	// Mount of the engine. Default: DefaultDatabaseMount.
	Mount string
	// Name of the role; actions name it in their policies
	// (<mount>/creds/<name>).
	Name string
	// DBName is the connection (DatabaseConfig.Name).
	DBName string
	// CreationStatements; {{name}}, {{password}} and {{expiration}} are
	// filled in by Vault.
	CreationStatements []string
	// RevocationStatements. Default: Vault's plugin default, which drops
	// the user but leaves its open sessions running.
	RevocationStatements []string
	// DefaultTTL of a credential. Default: 1h (Vault's system default).
	DefaultTTL time.Duration
	// MaxTTL of a credential, renewals included. Default: Vault's system max.
	MaxTTL time.Duration
}

// PostgresReadOnlyRole is a role whose users may only SELECT from schema
// (default "public"). Revoking a credential also ends its open sessions.
func PostgresReadOnlyRole(name, dbName, schema string, defaultTTL, maxTTL time.Duration) DatabaseRole {
	if schema == "" {
		schema = "public"
	}
	q := `"` + strings.ReplaceAll(schema, `"`, `""`) + `"`
	return DatabaseRole{
		Name:   name,
		DBName: dbName,
		CreationStatements: []string{
			`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' NOSUPERUSER NOCREATEDB NOCREATEROLE;`,
			`GRANT USAGE ON SCHEMA ` + q + ` TO "{{name}}";`,
			`GRANT SELECT ON ALL TABLES IN SCHEMA ` + q + ` TO "{{name}}";`,
		},
		RevocationStatements: []string{
			`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{{name}}';`,
			`REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA ` + q + ` FROM "{{name}}";`,
			`REVOKE USAGE ON SCHEMA ` + q + ` FROM "{{name}}";`,
			`DROP ROLE IF EXISTS "{{name}}";`,
		},
		DefaultTTL: defaultTTL,
		MaxTTL:     maxTTL,
	}
}

// EnsureDatabaseRole creates or updates a database role.
func (b *Broker) EnsureDatabaseRole(ctx context.Context, r DatabaseRole) error {
	if r.Mount == "" {
		r.Mount = DefaultDatabaseMount
	}
	if r.Name == "" || r.DBName == "" || len(r.CreationStatements) == 0 {
		return errors.New("write database role: name, database and creation statements are required")
	}
	body := map[string]any{
		"db_name":             r.DBName,
		"creation_statements": r.CreationStatements,
	}
	if len(r.RevocationStatements) > 0 {
		body["revocation_statements"] = r.RevocationStatements
	}
	if r.DefaultTTL > 0 {
		body["default_ttl"] = int(r.DefaultTTL.Seconds())
	}
	if r.MaxTTL > 0 {
		body["max_ttl"] = int(r.MaxTTL.Seconds())
	}
	if _, err := b.client.Logical().WriteWithContext(ctx, r.Mount+"/roles/"+r.Name, body); err != nil {
		return classify("write database role "+r.Name, err)
	}
	return nil
}

// enableMount mounts a secrets engine at path unless something is there.
func (b *Broker) enableMount(ctx context.Context, path, typ string) error {
	mounts, err := b.client.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return classify("list mounts", err)
	}
	if m, ok := mounts[strings.Trim(path, "/")+"/"]; ok {
		if m.Type != typ {
			return fmt.Errorf("enable %s at %s: %s is mounted there", typ, path, m.Type)
		}
		return nil
	}
	if err := b.client.Sys().MountWithContext(ctx, path, &api.MountInput{Type: typ}); err != nil {
		return classify("enable "+typ+" at "+path, err)
	}
	return nil
}

// redact removes a known secret from an error message. The error keeps its
// sentinels (ErrUnavailable) for errors.Is.
func redact(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return &redactedError{msg: strings.ReplaceAll(err.Error(), secret, "<redacted>"), err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }

// Unwrap exposes the sentinels only, never the original message.
func (e *redactedError) Unwrap() error {
	if errors.Is(e.err, ErrUnavailable) {
		return ErrUnavailable
	}
	return nil
}
