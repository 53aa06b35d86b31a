package approval

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/airlockhq/airlock/contract"
)

// MessageRef identifies a posted message (channel id and timestamp) so it
// can be edited later. It is the contract type, so activities can return it.
type MessageRef = contract.MessageRef

// Notifier posts and edits approval messages through Slack's Web API with a
// bot token (scopes: chat:write). The token is never logged nor put in
// errors.
type Notifier struct {
	api     *slack.Client
	token   string // only to scrub it from errors
	apiURL  string
	channel string
}

type notifierOptions struct {
	apiURL  string
	channel string
	client  *http.Client
}

// Option configures a Notifier.
type Option func(*notifierOptions)

// WithAPIURL sends Web API calls to url (e.g. a slacktest server); it must
// end with "/". Default: https://slack.com/api/.
func WithAPIURL(url string) Option { return func(o *notifierOptions) { o.apiURL = url } }

// WithDefaultChannel is where Post goes when it is given no channel.
// Default: none (Post then needs a channel).
func WithDefaultChannel(channel string) Option {
	return func(o *notifierOptions) { o.channel = channel }
}

// WithHTTPClient sets the HTTP client. Default: a client with a 10 s timeout.
func WithHTTPClient(c *http.Client) Option { return func(o *notifierOptions) { o.client = c } }

// NewNotifier returns a Notifier that authenticates with the bot token.
func NewNotifier(token string, opts ...Option) (*Notifier, error) {
	o := notifierOptions{apiURL: slack.APIURL, client: &http.Client{Timeout: 10 * time.Second}}
	for _, opt := range opts {
		opt(&o)
	}
	if strings.TrimSpace(token) == "" {
		return nil, errors.New("new notifier: empty bot token")
	}
	if o.client == nil {
		return nil, errors.New("new notifier: nil HTTP client")
	}
	if !strings.HasPrefix(o.apiURL, "http://") && !strings.HasPrefix(o.apiURL, "https://") {
		return nil, fmt.Errorf("new notifier: API URL %q is not http(s)", o.apiURL)
	}
	if !strings.HasSuffix(o.apiURL, "/") {
		o.apiURL += "/"
	}
	return &Notifier{
		api:     slack.New(token, slack.OptionAPIURL(o.apiURL), slack.OptionHTTPClient(o.client)),
		token:   token,
		apiURL:  o.apiURL,
		channel: o.channel,
	}, nil
}

// String keeps the token out of %v.
func (n *Notifier) String() string {
	return fmt.Sprintf("approval.Notifier{api: %s, channel: %q}", n.apiURL, n.channel)
}

// GoString keeps the token out of %#v.
func (n *Notifier) GoString() string { return n.String() }

// Post posts the message for a pending action to channel (or the default
// channel) and returns where it landed.
func (n *Notifier) Post(ctx context.Context, channel string, p contract.PendingAction, mode contract.NoticeMode) (MessageRef, error) {
	if channel == "" {
		channel = n.channel
	}
	if channel == "" {
		return MessageRef{}, errors.New("post message: no channel and no default channel")
	}
	blocks, err := Message(p, mode)
	if err != nil {
		return MessageRef{}, fmt.Errorf("post message: %w", err)
	}
	ch, ts, err := n.api.PostMessageContext(ctx, channel,
		slack.MsgOptionBlocks(blocks...), slack.MsgOptionText(FallbackText(p, mode), false))
	if err != nil {
		return MessageRef{}, n.wrap("post message", err)
	}
	if ch == "" {
		ch = channel
	}
	return MessageRef{Channel: ch, TS: ts}, nil
}

// Update rewrites a posted message with an outcome (see OutcomeMessage).
func (n *Notifier) Update(ctx context.Context, ref MessageRef, o Outcome) error {
	if ref.Channel == "" || ref.TS == "" {
		return errors.New("update message: message reference needs a channel and a ts")
	}
	_, _, _, err := n.api.UpdateMessageContext(ctx, ref.Channel, ref.TS,
		slack.MsgOptionBlocks(OutcomeMessage(o)...), slack.MsgOptionText(outcomeFallback(o), false))
	if err != nil {
		return n.wrap("update message", err)
	}
	return nil
}

// Ephemeral shows text to one user in a channel (e.g. why their click was
// refused) without changing the message everyone sees.
func (n *Notifier) Ephemeral(ctx context.Context, channel, user, text string) error {
	if channel == "" || user == "" {
		return errors.New("post ephemeral: needs a channel and a user")
	}
	if _, err := n.api.PostEphemeralContext(ctx, channel, user, slack.MsgOptionText(text, false)); err != nil {
		return n.wrap("post ephemeral", err)
	}
	return nil
}

// PostApprovalMessage is the activity registered as
// workflows.ActivityPostApproval.
func (n *Notifier) PostApprovalMessage(ctx context.Context, in contract.Notice) (contract.MessageRef, error) {
	return n.Post(ctx, in.Channel, in.Pending, in.Mode)
}

// UpdateApprovalMessage is the activity registered as
// workflows.ActivityUpdateApproval. Without the pending action at hand the
// message is reduced to a reference to the action and its outcome.
func (n *Notifier) UpdateApprovalMessage(ctx context.Context, in contract.NoticeUpdate) error {
	return n.Update(ctx, in.Ref, Outcome{
		WorkflowID:  in.WorkflowID,
		ActionIndex: in.Index,
		Status:      in.Status,
		By:          in.DecidedBy,
		At:          in.DecidedAt,
		Detail:      in.Detail,
	})
}

// wrap adds context to a Web API error and makes sure the token is not in it.
func (n *Notifier) wrap(op string, err error) error {
	if msg := err.Error(); strings.Contains(msg, n.token) {
		return fmt.Errorf("%s: %s", op, strings.ReplaceAll(msg, n.token, "[redacted]"))
	}
	return fmt.Errorf("%s: %w", op, err)
}

func outcomeFallback(o Outcome) string {
	s := fmt.Sprintf("Action #%d: %s", o.ActionIndex, o.Status)
	if len(o.By) > 0 {
		s += " by " + mentions(o.By)
	}
	return s
}
