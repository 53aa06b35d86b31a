package e2e

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/airlockhq/airlock/codec"
)

// rawHistory fetches a workflow's history as the server stores it.
func rawHistory(ctx context.Context, t *testing.T, wfID string) *historypb.History {
	t.Helper()
	h := &historypb.History{}
	it := env.tc.GetWorkflowHistory(ctx, wfID, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		h.Events = append(h.Events, ev)
	}
	return h
}

// decodedHistory returns a copy of h with every encrypted payload decrypted
// through the codec, as an authorised operator (or the codec server) sees it.
func decodedHistory(t *testing.T, h *historypb.History) *historypb.History {
	t.Helper()
	out := proto.Clone(h).(*historypb.History)
	var visit func(m protoreflect.Message)
	visit = func(m protoreflect.Message) {
		if p, ok := m.Interface().(*commonpb.Payload); ok {
			if codec.IsEncrypted(p) {
				dec, err := env.codec.Decode([]*commonpb.Payload{p})
				require.NoError(t, err)
				proto.Reset(p)
				proto.Merge(p, dec[0])
			}
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := 0; i < v.List().Len(); i++ {
					visit(v.List().Get(i).Message())
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					visit(mv.Message())
					return true
				})
			case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
				visit(v.Message())
			}
			return true
		})
	}
	visit(out.ProtoReflect())
	return out
}

// countPayloads counts the data payloads of a history, and those encrypted.
// Search attributes (plain by design, for the UI's queries) and the tracing
// header (a W3C trace context) are not data and are left out.
func countPayloads(h *historypb.History) (total, encrypted int) {
	var visit func(m protoreflect.Message)
	visit = func(m protoreflect.Message) {
		if p, ok := m.Interface().(*commonpb.Payload); ok {
			total++
			if codec.IsEncrypted(p) {
				encrypted++
			}
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch name := string(fd.Name()); {
			case name == "search_attributes" || name == "header":
			case fd.IsList() && fd.Message() != nil:
				for i := 0; i < v.List().Len(); i++ {
					visit(v.List().Get(i).Message())
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					visit(mv.Message())
					return true
				})
			case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
				visit(v.Message())
			}
			return true
		})
	}
	visit(h.ProtoReflect())
	return total, encrypted
}
