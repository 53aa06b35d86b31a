package infraaudit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// kubeLine is the part of an apiserver audit event (audit.k8s.io/v1,
// JSON lines from --audit-log-path) the timeline uses. Request and
// response objects are not decoded: the policy keeps Secrets at Metadata,
// and nothing here would print them anyway.
type kubeLine struct {
	Kind  string `json:"kind"`
	Stage string `json:"stage"`
	Verb  string `json:"verb"`
	User  struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	StageTimestamp string `json:"stageTimestamp"`
}

var errNotKubeAudit = errors.New("not an apiserver audit event")

// ReadKube reads an apiserver audit log (JSON lines) and returns the
// completed requests on the subject's objects: the Job, and every object
// named after it in its namespace (its Pods, Secret and NetworkPolicy).
// Reads of lists and watches are left out. Malformed lines are counted and
// skipped.
func ReadKube(r io.Reader, s Subject) ([]Event, Stats, error) {
	var st Stats
	var out []Event
	err := eachLine(r, &st, func(line []byte) error {
		var l kubeLine
		if err := json.Unmarshal(line, &l); err != nil {
			return err
		}
		if l.Kind != "Event" {
			return errNotKubeAudit
		}
		at, err := time.Parse(time.RFC3339Nano, l.StageTimestamp)
		if err != nil {
			return err
		}
		if l.Stage != "ResponseComplete" || l.ObjectRef == nil || l.Verb == "watch" || l.Verb == "list" || at.Before(s.Since) {
			return nil
		}
		o, ok := s.object(l.ObjectRef.Namespace, l.ObjectRef.Name)
		if !ok {
			return nil
		}
		res := l.ObjectRef.Resource
		if l.ObjectRef.Subresource != "" {
			res += "/" + l.ObjectRef.Subresource
		}
		what := fmt.Sprintf("%s %s %s/%s", l.Verb, res, l.ObjectRef.Namespace, l.ObjectRef.Name)
		if l.ResponseStatus != nil && l.ResponseStatus.Code != 0 {
			what += fmt.Sprintf(" → %d", l.ResponseStatus.Code)
		}
		i := o.Action
		st.Matched++
		out = append(out, Event{At: at, Source: SourceKube, Action: &i, Actor: l.User.Username, What: what})
		return nil
	})
	return out, st, err
}

// object finds the subject's object that name belongs to.
func (s Subject) object(namespace, name string) (Object, bool) {
	for _, o := range s.Objects {
		if o.Namespace == namespace && (name == o.Name || strings.HasPrefix(name, o.Name+"-")) {
			return o, true
		}
	}
	return Object{}, false
}
