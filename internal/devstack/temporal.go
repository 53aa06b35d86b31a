package devstack

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
)

// startTemporal runs `temporal server start-dev` with a SQLite file in Dir, so
// a restarted server keeps its workflows.
func (s *Stack) startTemporal(ctx context.Context) error {
	return s.launch(ctx, 4, s.temporalProcess)
}

// temporalProcess is the dev server listening on ports (gRPC, UI, HTTP,
// metrics).
func (s *Stack) temporalProcess(ports []int) (*process, error) {
	grpcPort, uiPort, httpPort, metricsPort := ports[0], ports[1], ports[2], ports[3]
	if s.opts.TemporalUIPort != 0 {
		uiPort = s.opts.TemporalUIPort
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(grpcPort))
	s.TemporalAddress = addr
	s.TemporalUIURL = fmt.Sprintf("http://127.0.0.1:%d", uiPort)

	args := []string{
		"server", "start-dev",
		"--ip", "127.0.0.1",
		"--port", strconv.Itoa(grpcPort),
		"--ui-port", strconv.Itoa(uiPort),
		// Fixed rather than the CLI's random choice, so a restart keeps them.
		"--http-port", strconv.Itoa(httpPort),
		"--metrics-port", strconv.Itoa(metricsPort),
		"--db-filename", filepath.Join(s.Dir, "temporal.db"),
		"--log-level", "warn",
		"--disable-config-file", "--disable-config-env",
		// Eager activities: a worker that schedules an activity may run it at
		// once instead of polling for it, as production servers allow.
		"--dynamic-config-value", "system.enableActivityEagerExecution=true",
		"--dynamic-config-value", "matching.numTaskqueueReadPartitions=1",
		"--dynamic-config-value", "matching.numTaskqueueWritePartitions=1",
		// The dev server has one history shard, so one transfer-queue reader
		// carries every workflow's tasks, at most 20 reads a second by
		// default: a workflow task scheduled within 50 ms of the last read
		// waited for the next (≈ 40 ms, twice per cycle, whenever cycles
		// followed each other). A production cluster spreads workflows over
		// hundreds of shards, each with its own reader. (The reader reads
		// when told of new tasks; this only caps how often.)
		"--dynamic-config-value", "history.transferProcessorMaxPollRPS=1000",
		// A dev server need not fsync every history write; WAL keeps
		// readers and the writer apart. Data still survives a restart.
		"--sqlite-pragma", "journal_mode=wal",
		"--sqlite-pragma", "synchronous=normal",
	}
	if s.opts.TemporalUICodecEndpoint != "" {
		args = append(args, "--ui-codec-endpoint", s.opts.TemporalUICodecEndpoint)
	}
	var want []string
	for _, sa := range s.opts.SearchAttributes {
		args = append(args, "--search-attribute", sa)
		name, _, _ := strings.Cut(sa, "=")
		want = append(want, name)
	}
	p := s.newProcess(ProcTemporal, "temporal", args...)
	p.ready = func(ctx context.Context) error { return temporalReady(ctx, addr, want) }
	return p, nil
}

// temporalReady passes once the frontend answers a health check and the
// default namespace has every wanted search attribute.
func temporalReady(ctx context.Context, addr string, searchAttributes []string) error {
	// A plain TCP dial first: cheaper than building a client while the
	// server is still starting.
	conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	conn.Close()

	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := client.DialContext(ctx, client.Options{
		HostPort:  addr,
		Namespace: "default",
		Logger:    tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		return fmt.Errorf("check health: %w", err)
	}
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: "default"})
	if err != nil {
		return fmt.Errorf("list search attributes: %w", err)
	}
	for _, name := range searchAttributes {
		if _, ok := resp.GetCustomAttributes()[name]; !ok {
			return fmt.Errorf("search attribute %s not registered yet", name)
		}
	}
	return nil
}
