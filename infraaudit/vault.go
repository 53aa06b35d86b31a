package infraaudit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// vaultLine is the part of a Vault file-audit entry the timeline uses.
// Fields that could carry secrets (client_token, request and response
// data other than an accessor, wrap tokens) are not decoded at all.
type vaultLine struct {
	Time    string     `json:"time"`
	Type    string     `json:"type"`
	Error   string     `json:"error"`
	Auth    *vaultAuth `json:"auth"`
	Request *struct {
		Operation string         `json:"operation"`
		Path      string         `json:"path"`
		Data      map[string]any `json:"data"`
	} `json:"request"`
	Response *struct {
		Auth *vaultAuth `json:"auth"`
	} `json:"response"`
}

type vaultAuth struct {
	Accessor    string   `json:"accessor"`
	DisplayName string   `json:"display_name"`
	Policies    []string `json:"policies"`
	TokenTTL    int64    `json:"token_ttl"`
}

// hmacPrefix starts every value Vault's audit device HMACed.
const hmacPrefix = "hmac-sha256:"

var errNotAudit = errors.New("not a Vault audit entry")

// ReadVault reads a Vault file audit log (JSON lines) and returns what
// concerns the subject's token accessors: the response entry of each
// request (request entries repeat them), as
//   - token issued: the response's auth carries the accessor;
//   - token renewed / revoked / looked up: a *-accessor request names it;
//   - used: the request was made with that token.
//
// Malformed lines are counted and skipped.
func ReadVault(r io.Reader, s Subject) ([]Event, Stats, error) {
	var st Stats
	var out []Event
	err := eachLine(r, &st, func(line []byte) error {
		var l vaultLine
		if err := json.Unmarshal(line, &l); err != nil {
			return err
		}
		if l.Type != "request" && l.Type != "response" || l.Request == nil {
			return errNotAudit
		}
		at, err := time.Parse(time.RFC3339Nano, l.Time)
		if err != nil {
			return err
		}
		if l.Type != "response" || at.Before(s.Since) {
			return nil
		}
		ev, hmaced := vaultEvents(l, at, s)
		if hmaced {
			st.HMACedAccessors++
		}
		if len(ev) > 0 {
			st.Matched++
			out = append(out, ev...)
		}
		return nil
	})
	return out, st, err
}

func vaultEvents(l vaultLine, at time.Time, s Subject) (out []Event, hmaced bool) {
	actor := "anonymous"
	if l.Auth != nil && (l.Auth.DisplayName != "" || l.Auth.Accessor != "") {
		actor = l.Auth.DisplayName
		if l.Auth.Accessor != "" {
			actor += " (accessor " + l.Auth.Accessor + ")"
		}
		hmaced = strings.HasPrefix(l.Auth.Accessor, hmacPrefix)
	}
	status := ""
	if l.Error != "" {
		status = ": error: " + l.Error
	}
	path, op := l.Request.Path, l.Request.Operation
	add := func(acc, what string) {
		i := s.Accessors[acc]
		out = append(out, Event{At: at, Source: SourceVault, Action: &i, Actor: actor, What: what + status, Accessor: acc})
	}
	// A renewal answers with the renewed token's auth too: not an issue.
	if ra := l.Response; ra != nil && ra.Auth != nil && !strings.Contains(path, "renew") {
		if _, ok := s.Accessors[ra.Auth.Accessor]; ok {
			add(ra.Auth.Accessor, fmt.Sprintf("token issued via %s: accessor %s, policies %s, ttl %s",
				path, ra.Auth.Accessor, strings.Join(ra.Auth.Policies, ","), time.Duration(ra.Auth.TokenTTL)*time.Second))
		}
	}
	if acc, _ := l.Request.Data["accessor"].(string); acc != "" {
		hmaced = hmaced || strings.HasPrefix(acc, hmacPrefix)
		if _, ok := s.Accessors[acc]; ok {
			verb := "token " + op + " by accessor"
			switch {
			case strings.HasSuffix(path, "/revoke-accessor"):
				verb = "token revoked"
			case strings.HasSuffix(path, "/renew-accessor"):
				verb = "token renewed"
			case strings.HasSuffix(path, "/lookup-accessor"):
				verb = "token looked up"
			}
			add(acc, fmt.Sprintf("%s: accessor %s (%s)", verb, acc, path))
		}
	}
	if l.Auth != nil {
		if _, ok := s.Accessors[l.Auth.Accessor]; ok {
			add(l.Auth.Accessor, fmt.Sprintf("used: %s %s with token accessor %s", op, path, l.Auth.Accessor))
		}
	}
	return out, hmaced
}
