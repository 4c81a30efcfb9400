package mail

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Sink is dev's relay: it keeps each message as a JSON file in a
// directory, so that the flows that send mail can be tried without a mail
// server. Its handler lists them (GET /dev/mail).
type Sink struct {
	Dir string
}

// sunk is a message as the sink keeps it.
type sunk struct {
	Message
	SentAt time.Time `json:"sent_at"`
}

// Send writes m to the sink; sending the same id again replaces it.
func (s Sink) Send(_ context.Context, m Message) error {
	if err := m.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(sunk{Message: m, SentAt: time.Now().UTC()}, "", "  ")
	if err != nil {
		return err
	}
	// Written whole, then renamed: a reader never sees half a message.
	tmp := filepath.Join(s.Dir, "."+m.ID+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.Dir, m.ID+".json"))
}

// list returns the sink's messages, newest first.
func (s Sink) list() ([]sunk, error) {
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return []sunk{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := []sunk{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.Dir, e.Name()))
		if err != nil {
			continue // removed since the listing
		}
		var m sunk
		if json.Unmarshal(b, &m) == nil {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b sunk) int { return b.SentAt.Compare(a.SentAt) })
	return out, nil
}

// Handler serves the sink's messages as {"items":[...]}, optionally only
// those to one address (?to=).
func (s Sink) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			problem(w, http.StatusMethodNotAllowed, "the mail sink is read with GET")
			return
		}
		list, err := s.list()
		if err != nil {
			problem(w, http.StatusServiceUnavailable, "the mail sink's directory cannot be read: "+filepath.Base(s.Dir))
			return
		}
		if to := r.URL.Query().Get("to"); to != "" {
			list = slices.DeleteFunc(list, func(m sunk) bool { return !strings.EqualFold(m.To, to) })
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(map[string]any{"items": list})
	})
}

func problem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail})
}
