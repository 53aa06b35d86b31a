package codec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/proto"
)

const agent = "zeta-agent-7"

func revealActivity(_ context.Context, in request) (string, error) {
	if in.Agent == "" {
		return "", temporal.NewNonRetryableApplicationError("no agent for key "+in.APIKey, "BadRequest", nil)
	}
	return "agent " + in.Agent + " used " + in.APIKey, nil
}

func revealWorkflow(ctx workflow.Context, in request) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
	var out string
	err := workflow.ExecuteActivity(ctx, revealActivity, in).Get(ctx, &out)
	return out, err
}

func dial(t *testing.T, opts client.Options) client.Client {
	t.Helper()
	opts.HostPort = stack.TemporalAddress
	opts.Logger = log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	c, err := client.DialContext(t.Context(), opts)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// TestWorkflowHistoryIsEncrypted runs real workflows whose input, result and
// error carry a secret and reads their histories the way Temporal (or anyone
// with access to it) sees them: without the codec.
func TestWorkflowHistoryIsEncrypted(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c := newCodec(t, newTransit(t), Options{})
	withCodec := dial(t, client.Options{DataConverter: DataConverter(c), FailureConverter: FailureConverter(c)})
	raw := dial(t, client.Options{})

	queue := "codec-" + t.Name()
	w := worker.New(withCodec, queue, worker.Options{})
	w.RegisterWorkflow(revealWorkflow)
	w.RegisterActivity(revealActivity)
	require.NoError(t, w.Start())
	defer w.Stop()

	start := func(t *testing.T, in request) client.WorkflowRun {
		run, err := withCodec.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID: fmt.Sprintf("codec-test-%d", time.Now().UnixNano()), TaskQueue: queue,
		}, revealWorkflow, in)
		require.NoError(t, err)
		return run
	}

	// rawHistory returns the marshalled events and the payloads that carry
	// the workflow's and the activity's inputs and results.
	rawHistory := func(t *testing.T, run client.WorkflowRun) (events [][]byte, payloads []*commonpb.Payload) {
		it := raw.GetWorkflowHistory(ctx, run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			require.NoError(t, err)
			b, err := proto.Marshal(ev)
			require.NoError(t, err)
			events = append(events, b)
			payloads = append(payloads, eventPayloads(ev)...)
		}
		require.NotEmpty(t, events)
		return events, payloads
	}
	assertNoClearText := func(t *testing.T, events [][]byte) {
		for i, b := range events {
			assert.False(t, bytes.Contains(b, []byte(secret)), "history event %d holds the secret in clear", i+1)
			assert.False(t, bytes.Contains(b, []byte(agent)), "history event %d holds the agent in clear", i+1)
		}
	}

	t.Run("inputs and results", func(t *testing.T) {
		run := start(t, request{Agent: agent, APIKey: secret})
		var out string
		require.NoError(t, run.Get(ctx, &out), "the codec client reads the result")
		assert.Equal(t, "agent "+agent+" used "+secret, out)

		events, payloads := rawHistory(t, run)
		assertNoClearText(t, events)
		// Workflow input, activity input, activity result, workflow result.
		require.Len(t, payloads, 4)
		for i, p := range payloads {
			assert.Equal(t, "binary/encrypted", string(p.GetMetadata()["encoding"]), "payload %d", i)
			assert.NotEmpty(t, p.GetMetadata()[MetadataDataKey])
		}

		var rawOut string
		err := raw.GetWorkflow(ctx, run.GetID(), run.GetRunID()).Get(ctx, &rawOut)
		assert.Error(t, err, "a client without the codec cannot read the result")
		assert.Empty(t, rawOut)
	})

	t.Run("error messages", func(t *testing.T) {
		run := start(t, request{APIKey: secret})
		err := run.Get(ctx, nil)
		require.Error(t, err)
		var appErr *temporal.ApplicationError
		require.True(t, errors.As(err, &appErr), "got %v", err)
		assert.Equal(t, "BadRequest", appErr.Type())
		assert.Contains(t, err.Error(), "no agent for key "+secret, "the codec client reads the message")

		events, _ := rawHistory(t, run)
		assertNoClearText(t, events)
		rawErr := raw.GetWorkflow(ctx, run.GetID(), run.GetRunID()).Get(ctx, nil)
		require.Error(t, rawErr)
		assert.NotContains(t, rawErr.Error(), secret)
	})
}

func eventPayloads(ev *historypb.HistoryEvent) []*commonpb.Payload {
	var ps []*commonpb.Payload
	ps = append(ps, ev.GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()...)
	ps = append(ps, ev.GetActivityTaskScheduledEventAttributes().GetInput().GetPayloads()...)
	ps = append(ps, ev.GetActivityTaskCompletedEventAttributes().GetResult().GetPayloads()...)
	ps = append(ps, ev.GetWorkflowExecutionCompletedEventAttributes().GetResult().GetPayloads()...)
	return ps
}
