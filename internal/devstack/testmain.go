package devstack

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
)

// Main starts a stack for a test binary, stores it in *dst, runs the tests
// and stops the stack, whatever happened. Use it from TestMain:
//
//	var stack *devstack.Stack
//
//	func TestMain(m *testing.M) {
//		os.Exit(devstack.Main(m, devstack.Options{Temporal: true}, &stack))
//	}
//
// Progress goes to stderr unless opts.Logf is set. SIGINT or SIGTERM stops
// the stack and exits. Keep the stack's Dir with opts.KeepDir to read the
// servers' logs after a failure.
func Main(m *testing.M, opts Options, dst **Stack) int {
	if opts.Logf == nil {
		opts.Logf = func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, format+"\n", args...)
		}
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	s, err := Start(ctx, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "devstack: %v\n", err)
		return 1
	}
	*dst = s

	// Tests do not watch ctx; on a signal stop the servers and leave.
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			fmt.Fprintln(os.Stderr, "devstack: interrupted, stopping servers")
			_ = s.Stop()
			os.Exit(1)
		case <-done:
		}
	}()

	code := m.Run()
	if err := s.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "devstack: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}
