// Package mcpserver is Airlock as a Model Context Protocol server: one
// server speaks for one agent. Every action type the catalog lets that agent
// propose is a tool; calling it proposes a one-action cycle signed as the
// agent (through starter, with the agent's own Vault Transit key) and returns
// the cycle's result. Two read-only tools read cycles and pending decisions.
//
// What runs is decided by Airlock alone — the catalog, the agent's current
// trust phase and the humans who approve — never by anything a client says:
// tool annotations are hints Airlock publishes, and reads none back.
package mcpserver

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/trace"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/starter"
)

// Cycles is what the server needs of Airlock; *starter.Client is the
// implementation (built with the agent's signer and the catalog).
type Cycles interface {
	Validate(req contract.CycleRequest) error
	Start(ctx context.Context, req contract.CycleRequest) (*starter.Run, error)
	Status(ctx context.Context, workflowID string) (contract.CycleResult, error)
	Pending(ctx context.Context, workflowID string) ([]contract.PendingAction, error)
	Waiting(ctx context.Context, pageSize int) ([]starter.WaitingCycle, error)
	AgentState(ctx context.Context, agentID string) (contract.AgentState, error)
}

var _ Cycles = (*starter.Client)(nil)

// Config configures a Server.
type Config struct {
	// AgentID is the agent this server speaks for. Required; it must be in
	// the catalog, and Cycles must sign as it.
	AgentID string
	// Catalog gives the tools: the agent's action types with their
	// params_schema, class and risk. Required.
	Catalog *policy.Catalog
	// Cycles proposes and reads cycles. Required.
	Cycles Cycles
	// Wait is how long a call waits for its cycle (a human decision
	// included) before it returns status "pending". Default: 2m.
	Wait time.Duration
	// ProgressInterval is how often a call that carries a progress token
	// hears where its cycle stands while it waits. Default: 5s.
	ProgressInterval time.Duration
	// UIBaseURL is the Temporal Web UI (e.g. http://127.0.0.1:8233); results
	// link to their cycle there. Optional.
	UIBaseURL string
	// Namespace is the Temporal namespace in UI links. Default: default.
	Namespace string
	// Logger logs to stderr in stdio mode (stdout is the protocol).
	// Default: discard.
	Logger *slog.Logger
	// Version is reported to clients. Default: dev.
	Version string
	// Traceparent is the W3C trace context of the agent whose cycles this
	// server proposes (e.g. the process's TRACEPARENT), with its
	// Tracestate: every call's cycle joins that trace unless the call's
	// _meta carries a traceparent of its own, which wins. A malformed one
	// is logged as a warning and ignored. The starting Temporal client
	// needs the tracing interceptor for the workflow to join. Optional.
	Traceparent, Tracestate string
}

// Defaults.
const (
	DefaultWait             = 2 * time.Minute
	DefaultProgressInterval = 5 * time.Second
)

// Server is one agent's MCP server.
type Server struct {
	cfg    Config
	agent  *policy.Agent
	mcp    *mcp.Server
	tools  map[string]*policy.ActionType
	now    func() time.Time
	logger *slog.Logger
	trace  trace.SpanContext // Config.Traceparent, when valid
}

// New builds the server and its tools from the catalog. A catalog whose
// params_schema cannot be a tool's input schema is refused here, not at
// call time.
func New(cfg Config) (*Server, error) {
	if cfg.Catalog == nil || cfg.Cycles == nil {
		return nil, errors.New("mcp server: a catalog and a cycle client are required")
	}
	if cfg.AgentID == "" {
		return nil, errors.New("mcp server: the agent id is required (--agent or AIRLOCK_AGENT)")
	}
	ag, ok := cfg.Catalog.Agent(cfg.AgentID)
	if !ok {
		return nil, fmt.Errorf("mcp server: agent %q is not in the catalog", cfg.AgentID)
	}
	if cfg.Wait < 0 || cfg.ProgressInterval < 0 {
		return nil, errors.New("mcp server: wait and progress interval must be positive")
	}
	if cfg.Wait == 0 {
		cfg.Wait = DefaultWait
	}
	if cfg.ProgressInterval == 0 {
		cfg.ProgressInterval = DefaultProgressInterval
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "default"
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.UIBaseURL != "" {
		if u, err := url.Parse(cfg.UIBaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("mcp server: UI base URL %q is not an http(s) URL", cfg.UIBaseURL)
		}
		cfg.UIBaseURL = strings.TrimSuffix(cfg.UIBaseURL, "/")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, agent: ag, tools: map[string]*policy.ActionType{}, now: time.Now,
		logger: logger.With("agent", ag.ID)}
	// Tracing never stops the server: with a malformed TRACEPARENT cycles
	// start in the calls' traces, or in their own.
	var err error
	if s.trace, err = spanContext(cfg.Traceparent, cfg.Tracestate); err != nil {
		s.logger.Warn("the server's trace context (TRACEPARENT)", "err", err, "ignored", !s.trace.IsValid())
	}
	s.mcp = mcp.NewServer(&mcp.Implementation{Name: "airlock", Title: "Airlock", Version: cfg.Version}, &mcp.ServerOptions{
		Instructions: fmt.Sprintf("Airlock runs actions on real infrastructure for agent %s. Each tool is an action type; "+
			"what a call does depends on the agent's trust phase, said in each tool's description (list tools again for the current phase). "+
			"Some calls wait for a human; a call that returns status \"pending\" has not run yet: poll %s.", ag.ID, ToolCycleStatus),
		Logger:       logger,
		Capabilities: &mcp.ServerCapabilities{Tools: &mcp.ToolCapabilities{}},
	})
	for _, name := range ag.Actions {
		a, ok := cfg.Catalog.Action(name)
		if !ok {
			return nil, fmt.Errorf("mcp server: agent %s lists unknown action type %q", ag.ID, name)
		}
		schema, err := inputSchema(a)
		if err != nil {
			return nil, fmt.Errorf("mcp server: %w", err)
		}
		s.tools[a.Name] = a
		s.mcp.AddTool(&mcp.Tool{
			Name: a.Name, Title: a.Name, InputSchema: schema, Annotations: annotations(a),
			// The description depends on the agent's phase: filled in
			// when tools are listed (describeTools).
			Description: describe(ag, a, s.catalogPhases()),
		}, s.actionHandler(a))
	}
	s.mcp.AddTool(statusTool(), s.statusHandler)
	s.mcp.AddTool(pendingTool(), s.pendingHandler)
	s.mcp.AddReceivingMiddleware(s.describeTools)
	return s, nil
}

// MCP returns the underlying MCP server (to run on any transport).
func (s *Server) MCP() *mcp.Server { return s.mcp }

// RunStdio serves one client over stdin/stdout until it disconnects or ctx
// ends. Nothing else may write to stdout.
func (s *Server) RunStdio(ctx context.Context) error {
	err := s.mcp.Run(ctx, &mcp.StdioTransport{})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// HTTPHandler serves the streamable HTTP transport. With a non-empty
// bearerToken every request must carry "Authorization: Bearer <token>":
// whoever reaches this endpoint acts as the agent.
func (s *Server) HTTPHandler(bearerToken string) http.Handler {
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s.mcp }, &mcp.StreamableHTTPOptions{Logger: s.logger})
	if bearerToken == "" {
		return h
	}
	want := []byte("Bearer " + bearerToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="airlock-mcp"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// describeTools rewrites the action tools' descriptions with the agent's
// phase read when the list is asked for: no caching, so listing again
// always shows the current phase (one query of the agent's workflow per
// list).
func (s *Server) describeTools(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		res, err := next(ctx, method, req)
		list, ok := res.(*mcp.ListToolsResult)
		if err != nil || method != "tools/list" || !ok {
			return res, err
		}
		pv := s.phases(ctx)
		out := *list
		out.Tools = make([]*mcp.Tool, len(list.Tools))
		for i, t := range list.Tools {
			if a, ok := s.tools[t.Name]; ok {
				cp := *t // the server's own tool must not change
				cp.Description = describe(s.agent, a, pv)
				t = &cp
			}
			out.Tools[i] = t
		}
		out.TTLMs = 0 // stale at once: the phase can change any time
		return &out, nil
	}
}

// phases reads the agent's live phases (its Agent workflow), capped by the
// catalog as cycles cap them.
func (s *Server) phases(ctx context.Context) phaseView {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := s.cfg.Cycles.AgentState(ctx, s.agent.ID)
	if errors.Is(err, starter.ErrNoAgentState) {
		return s.catalogPhases()
	}
	if err != nil {
		s.logger.Warn("read agent state", "err", err)
		return phaseView{unknown: "Airlock could not be reached"}
	}
	return phaseView{status: st.Status, why: st.Why, phases: s.agent.CappedPhases(st.Phases)}
}

// catalogPhases are the phases of an agent that has not run yet: the
// catalog's, or its trust's start phase, as the Agent workflow seeds them.
func (s *Server) catalogPhases() phaseView {
	cur := s.agent.Phases
	if start := s.agent.Trust.Start; start != "" {
		cur = map[policy.Class]policy.Phase{}
		for cl := range s.agent.Phases {
			cur[cl] = start
		}
	}
	return phaseView{status: contract.AgentActive, phases: s.agent.CappedPhases(cur)}
}

// uiURL links a cycle in the Temporal UI.
func (s *Server) uiURL(workflowID string) string {
	if s.cfg.UIBaseURL == "" {
		return ""
	}
	return s.cfg.UIBaseURL + "/namespaces/" + url.PathEscape(s.cfg.Namespace) + "/workflows/" + url.PathEscape(workflowID)
}
