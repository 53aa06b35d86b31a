package devstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// PostgresBinDirEnv names a directory holding initdb, postgres and psql. It
// overrides the search of PATH and /usr/lib/postgresql/*/bin.
const PostgresBinDirEnv = "AIRLOCK_POSTGRES_BIN_DIR"

// postgresLibGlob is where Debian's postgresql-NN packages put their binaries.
var postgresLibGlob = "/usr/lib/postgresql/*/bin"

// ErrPostgresNotInstalled is returned by StartPostgres when initdb and
// postgres cannot be found.
var ErrPostgresNotInstalled = errors.New("PostgreSQL server binaries (initdb, postgres) not found in $" +
	PostgresBinDirEnv + ", PATH or " + "/usr/lib/postgresql/*/bin: install the Debian package postgresql (apt-get install -y postgresql)")

// Postgres is a throwaway PostgreSQL server on a free loopback port, for
// Vault's database secrets engine in tests and dev mode. It keeps its data
// and log under one directory and dies with its parent.
//
// PostgreSQL refuses to run as root: when the caller is root, initdb and
// postgres run as the user "postgres" (created by the Debian package), else
// "nobody".
type Postgres struct {
	Host     string // 127.0.0.1
	Port     int
	User     string // the superuser
	Password string // the superuser's password, random per start
	Database string // postgres
	// BinDir holds initdb, postgres and, usually, psql.
	BinDir string
	// LogPath is the server's log (stdout and stderr).
	LogPath string

	dataDir string
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd has been waited for
	werr    error         // cmd.Wait's result, set before exited is closed
	stopped bool
}

// StartPostgres initialises a new cluster in <dir>/postgres and starts a
// server on it, waiting until it accepts connections. Only password (SCRAM)
// authentication over TCP on 127.0.0.1 is enabled; there is no Unix socket.
//
// As root, the directories above dir must be traversable by the unprivileged
// user; StartPostgres adds the execute ("search") bit for others to those it
// owns that lack it — as is the case for t.TempDir's parent.
func StartPostgres(ctx context.Context, dir string) (*Postgres, error) {
	return startPostgres(ctx, dir, freePorts)
}

// startPostgres is StartPostgres with the port picker as a parameter. A
// port taken before the server binds it is retried on a new one, as
// Stack.launch does for the other servers.
func startPostgres(ctx context.Context, dir string, pickPorts func(n int) ([]int, error)) (*Postgres, error) {
	bin, err := findPostgresBin()
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	cred, err := postgresCredential()
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	root := filepath.Join(dir, "postgres")
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	if cred != nil {
		if err := os.Chown(root, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("start postgres: %w", err)
		}
		if err := makeTraversable(dir, cred.Uid); err != nil {
			return nil, fmt.Errorf("start postgres: %w", err)
		}
	}
	p := &Postgres{
		Host:     "127.0.0.1",
		User:     "airlock",
		Password: randomHex(16),
		Database: "postgres",
		BinDir:   bin,
		LogPath:  filepath.Join(dir, "postgres.log"),
		dataDir:  filepath.Join(root, "data"),
	}
	env := postgresEnv(root)
	if err := p.initdb(ctx, root, env, cred); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		ports, err := pickPorts(1)
		if err != nil {
			return nil, fmt.Errorf("start postgres: %w", err)
		}
		p.Port = ports[0]
		err = p.start(ctx, env, cred)
		if err == nil {
			return p, nil
		}
		p.mu.Lock()
		stopped := p.stopped // gave up on a server that never got ready
		p.mu.Unlock()
		var taken *portTakenError
		if !errors.As(err, &taken) || stopped || ctx.Err() != nil || attempt == maxStartAttempts {
			return nil, err
		}
	}
}

// URL is a connection URL for the superuser, with its password.
func (p *Postgres) URL() string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(p.User, p.Password),
		Host:     p.Addr(),
		Path:     "/" + p.Database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Addr is host:port.
func (p *Postgres) Addr() string {
	return net.JoinHostPort(p.Host, strconv.Itoa(p.Port))
}

// Stop shuts the server down (fast shutdown: SIGINT, SIGKILL after 10s) and
// waits until it has exited. It keeps the data directory. Stop is
// idempotent.
func (p *Postgres) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nil
	}
	p.stopped = true
	select {
	case <-p.exited:
		return nil
	default:
	}
	pgid := p.cmd.Process.Pid // Setpgid: the pid is the group id
	_ = syscall.Kill(-pgid, syscall.SIGINT)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.exited
	}
	return nil
}

// Pid is the postmaster's process id while it runs, else 0.
func (p *Postgres) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	select {
	case <-p.exited:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}

// Psql runs one SQL command with psql as user (TCP, password
// authentication) and returns its unaligned, tuples-only output. The
// password travels in the environment, never on the command line, and no
// error contains it.
func (p *Postgres) Psql(ctx context.Context, user, password, sql string) (string, error) {
	psql := filepath.Join(p.BinDir, "psql")
	if _, err := os.Stat(psql); err != nil {
		if psql, err = exec.LookPath("psql"); err != nil {
			return "", errors.New("psql: not found: install the Debian package postgresql-client")
		}
	}
	cmd := exec.CommandContext(ctx, psql, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql)
	cmd.Env = append(filterEnv(os.Environ(), "PG"),
		"PGHOST="+p.Host, "PGPORT="+strconv.Itoa(p.Port), "PGDATABASE="+p.Database,
		"PGUSER="+user, "PGPASSWORD="+password, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=5",
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if password != "" {
			msg = strings.ReplaceAll(msg, password, "<redacted>")
		}
		return "", fmt.Errorf("psql as %s: %w: %s", user, err, msg)
	}
	return strings.TrimSpace(stdout.String()), nil
}

func (p *Postgres) initdb(ctx context.Context, root string, env []string, cred *syscall.Credential) error {
	pwfile := filepath.Join(root, "pwfile")
	if err := os.WriteFile(pwfile, []byte(p.Password+"\n"), 0o600); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	defer os.Remove(pwfile)
	if cred != nil {
		if err := os.Chown(pwfile, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("start postgres: %w", err)
		}
	}
	cmd := exec.CommandContext(ctx, filepath.Join(p.BinDir, "initdb"),
		"--pgdata="+p.dataDir,
		"--username="+p.User,
		"--pwfile="+pwfile,
		"--auth=scram-sha-256",
		"--encoding=UTF8",
		"--locale=C",
		// Test data is disposable.
		"--no-sync",
		"--no-instructions",
	)
	cmd.Dir = root
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("start postgres: initdb: %w\n--- initdb output:\n%s", err, tailLines(string(out), 30))
	}
	return nil
}

// start runs the postmaster on p.Port and waits until it is ready. The
// error is a *portTakenError when this run's log says the port was taken.
func (p *Postgres) start(ctx context.Context, env []string, cred *syscall.Credential) (err error) {
	log, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	defer log.Close() // the child has its own copy
	if info, statErr := log.Stat(); statErr == nil {
		logStart := info.Size()
		defer func() {
			if err != nil && portTaken(p.LogPath, logStart) {
				err = &portTakenError{err}
			}
		}()
	}
	args := []string{
		"-D", p.dataDir,
		"-h", p.Host,
		"-p", strconv.Itoa(p.Port),
		"-c", "unix_socket_directories=",
		// Test data is disposable; durability costs most of a write.
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "shared_buffers=16MB",
		"-c", "max_connections=50",
		"-c", "log_min_messages=warning",
	}
	fmt.Fprintf(log, "=== devstack %s: %s %s\n", time.Now().Format(time.RFC3339Nano), filepath.Join(p.BinDir, "postgres"), strings.Join(args, " "))
	cmd := exec.Command(filepath.Join(p.BinDir, "postgres"), args...)
	cmd.Dir = filepath.Dir(p.dataDir)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: cred,
		// Own process group, as the other servers (see process.spawn).
		Setpgid: true,
		// Die with the parent. The kernel clears this on a credential
		// change, but Go sets it after switching user, so it holds.
		// The postmaster's children exit when it dies.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	p.cmd, p.exited = cmd, make(chan struct{})
	exited := p.exited
	go func() {
		// werr is read only after exited is closed.
		p.werr = cmd.Wait()
		close(exited)
	}()

	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var lastErr error
	for {
		if lastErr = p.ready(ctx); lastErr == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("start postgres: exited during start-up (%v)%s", p.werr, p.logTail())
		case <-ctx.Done():
			_ = p.Stop()
			return fmt.Errorf("start postgres: not ready: %w (last check: %v)%s", context.Cause(ctx), lastErr, p.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ready passes once the postmaster says it is ready (the status line of
// postmaster.pid) and the port accepts connections.
func (p *Postgres) ready(ctx context.Context) error {
	b, err := os.ReadFile(filepath.Join(p.dataDir, "postmaster.pid"))
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if status := strings.TrimSpace(lines[len(lines)-1]); status != "ready" {
		return fmt.Errorf("postmaster status %q", status)
	}
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", p.Addr())
	if err != nil {
		return err
	}
	return c.Close()
}

func (p *Postgres) logTail() string {
	tail, err := readTail(p.LogPath, 4096, 30)
	if err != nil || tail == "" {
		return ""
	}
	return "\n--- last lines of postgres.log:\n" + tail
}

// findPostgresBin returns the first directory holding both initdb and
// postgres: $AIRLOCK_POSTGRES_BIN_DIR alone if set, else postgres's
// directory on PATH, else the newest /usr/lib/postgresql/<version>/bin.
func findPostgresBin() (string, error) {
	var dirs []string
	if dir := os.Getenv(PostgresBinDirEnv); dir != "" {
		dirs = []string{dir}
	} else {
		if path, err := exec.LookPath("postgres"); err == nil {
			dirs = append(dirs, filepath.Dir(path))
		}
		matches, _ := filepath.Glob(postgresLibGlob)
		slices.SortFunc(matches, func(a, b string) int { return pgVersion(b) - pgVersion(a) })
		dirs = append(dirs, matches...)
	}
	for _, dir := range dirs {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", ErrPostgresNotInstalled
}

// pgVersion is the major version in /usr/lib/postgresql/<version>/bin.
func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isExecutable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && !info.IsDir() && info.Mode()&0o111 != 0
}

// postgresCredential is who the server runs as: nil (the caller) unless the
// caller is root.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	var errs []error
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("user %s: %w", name, err)
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
	}
	return nil, fmt.Errorf("no unprivileged user to run PostgreSQL as (PostgreSQL refuses root): %w", errors.Join(errs...))
}

// makeTraversable lets uid reach dir: every directory from dir up to / must
// grant it search permission. Directories the caller owns that grant none to
// others get o+x (search only, no listing); anything else is an error.
func makeTraversable(dir string, uid uint32) error {
	for d := dir; ; d = filepath.Dir(d) {
		info, err := os.Stat(d)
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		searchable := info.Mode()&0o001 != 0 || (ok && st.Uid == uid && info.Mode()&0o100 != 0)
		if !searchable {
			if !ok || int(st.Uid) != os.Geteuid() {
				return fmt.Errorf("%s is not searchable by uid %d: PostgreSQL cannot reach its data", d, uid)
			}
			if err := os.Chmod(d, info.Mode().Perm()|0o001); err != nil {
				return err
			}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// postgresEnv is the parent's environment without PG* variables (they would
// redirect initdb or the server) and without what childEnv drops.
func postgresEnv(home string) []string {
	var env []string
	for _, kv := range filterEnv(childEnv(home), "PG") {
		if !strings.HasPrefix(kv, "LC_ALL=") {
			env = append(env, kv)
		}
	}
	return append(env, "LC_ALL=C")
}

func filterEnv(env []string, prefix string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, prefix) {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
