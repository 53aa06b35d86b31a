package devenv

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/airlockhq/airlock/approval"
	"github.com/airlockhq/airlock/contract"
)

// ClickBody is the form body Slack would send when approver presses kind's
// button on the message for a pending action: a block_actions interaction
// whose button value binds the decision to the action's hash.
func ClickBody(p contract.PendingAction, kind contract.DecisionKind, approver string) (string, error) {
	value, err := approval.ButtonValue{WorkflowID: p.WorkflowID, ActionIndex: p.Action.Index, ActionHash: p.Action.Hash, Kind: kind}.Encode()
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(map[string]any{
		"type":      "block_actions",
		"user":      map[string]any{"id": approver},
		"container": map[string]any{"type": "message", "channel_id": "C0DEV"},
		"actions":   []map[string]any{{"action_id": approval.ActionID(kind), "block_id": "airlock_actions", "value": value, "type": "button"}},
	})
	if err != nil {
		return "", err
	}
	return url.Values{"payload": {string(payload)}}.Encode(), nil
}

// Sign is Slack's v0 request signature of body at ts.
func Sign(secret string, ts time.Time, body string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%d:%s", ts.Unix(), body)
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

// ClickCommand is a ready-to-run shell snippet posting body to endpoint the
// way Slack does. It signs when it runs (openssl), so it stays valid past
// Slack's 5-minute window; the secret comes from $SLACK_SIGNING_SECRET.
// The body is form-encoded and so never holds a single quote.
func ClickCommand(endpoint, body string) string {
	return fmt.Sprintf(`BODY='%s'
TS=$(date +%%s); SIG=$(printf 'v0:%%s:%%s' "$TS" "$BODY" | openssl dgst -sha256 -hmac "$SLACK_SIGNING_SECRET" | sed 's/^.* //')
curl -sS -X POST '%s' -H "X-Slack-Request-Timestamp: $TS" -H "X-Slack-Signature: v0=$SIG" --data "$BODY"`, body, endpoint)
}

// Click posts body to endpoint signed with secret, as Slack would, and
// returns the endpoint's answer ("approved", "refused: …").
func Click(ctx context.Context, endpoint, secret, body string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(body))
	if err != nil {
		return "", err
	}
	now := time.Now()
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("X-Slack-Signature", Sign(secret, now, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("click: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	answer := strings.TrimSpace(string(b))
	if resp.StatusCode != http.StatusOK {
		return answer, fmt.Errorf("click: %s: %s", resp.Status, answer)
	}
	return answer, nil
}
