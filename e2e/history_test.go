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
func rawHistory(ctx context.Context, t testing.TB, wfID string) *historypb.History {
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

// walkPayloads calls fn on every payload in m, skipping fields skip names.
func walkPayloads(m protoreflect.Message, skip func(field string) bool, fn func(*commonpb.Payload)) {
	if p, ok := m.Interface().(*commonpb.Payload); ok {
		fn(p)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case skip(string(fd.Name())):
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				walkPayloads(v.List().Get(i).Message(), skip, fn)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				walkPayloads(mv.Message(), skip, fn)
				return true
			})
		case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
			walkPayloads(v.Message(), skip, fn)
		}
		return true
	})
}

// decodedHistory returns a copy of h with every encrypted payload decrypted
// through the codec, as an authorised operator (or the codec server) sees it.
func decodedHistory(t *testing.T, h *historypb.History) *historypb.History {
	t.Helper()
	out := proto.Clone(h).(*historypb.History)
	walkPayloads(out.ProtoReflect(), func(string) bool { return false }, func(p *commonpb.Payload) {
		if !codec.IsEncrypted(p) {
			return
		}
		dec, err := env.codec.Decode([]*commonpb.Payload{p})
		require.NoError(t, err)
		proto.Reset(p)
		proto.Merge(p, dec[0])
	})
	return out
}

// countPayloads counts the data payloads of a history, and those encrypted.
// Search attributes (plain by design, for the UI's queries) and the tracing
// header (a W3C trace context) are not data and are left out.
func countPayloads(h *historypb.History) (total, encrypted int) {
	notData := func(field string) bool { return field == "search_attributes" || field == "header" }
	walkPayloads(h.ProtoReflect(), notData, func(p *commonpb.Payload) {
		total++
		if codec.IsEncrypted(p) {
			encrypted++
		}
	})
	return total, encrypted
}
