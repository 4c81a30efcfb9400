package eventstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// directGetter runs batched direct gets ($JS.API.DIRECT.GET) over one
// long-lived inbox subscription shared by every request, the way nats.go
// multiplexes plain requests. A subscription per request, as general
// clients make, allocates a large channel each time and dominated the cost
// of reading an aggregate.
type directGetter struct {
	nc     *nats.Conn
	subj   string
	prefix string

	once    sync.Once
	initErr error
	next    atomic.Uint64
	mu      sync.Mutex
	waiting map[string]chan *nats.Msg
}

func newDirectGetter(js jetstream.JetStream, stream string) *directGetter {
	api := js.Options().APIPrefix
	if api == "" {
		api = "$JS.API."
	}
	if api[len(api)-1] != '.' {
		api += "."
	}
	return &directGetter{nc: js.Conn(), subj: api + "DIRECT.GET." + stream, waiting: map[string]chan *nats.Msg{}}
}

func (g *directGetter) init() error {
	g.once.Do(func() {
		g.prefix = g.nc.NewRespInbox()
		_, g.initErr = g.nc.Subscribe(g.prefix+".*", func(m *nats.Msg) {
			token := m.Subject[len(g.prefix)+1:]
			g.mu.Lock()
			ch := g.waiting[token]
			g.mu.Unlock()
			if ch != nil {
				select {
				case ch <- m:
				default:
					// A reader that gave up (context ended) no longer drains.
				}
			}
		})
	})
	return g.initErr
}

// directGetRequest is the body of a batched direct get.
type directGetRequest struct {
	Seq       uint64   `json:"seq,omitempty"`
	NextFor   string   `json:"next_by_subj,omitempty"`
	Batch     int      `json:"batch,omitempty"`
	MultiLast []string `json:"multi_last,omitempty"`
}

// batchEnd is what the end of a batch reports: how many matching messages
// remain after it, and (for multi_last) the stream sequence the answer is
// complete up to.
type batchEnd struct {
	pending, upTo uint64
}

// get sends one batched direct get and collects its messages.
func (g *directGetter) get(ctx context.Context, req directGetRequest, expect int) ([]Message, batchEnd, error) {
	if err := g.init(); err != nil {
		return nil, batchEnd{}, classify(err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, batchEnd{}, err
	}
	token := strconv.FormatUint(g.next.Add(1), 36)
	ch := make(chan *nats.Msg, expect+2)
	g.mu.Lock()
	g.waiting[token] = ch
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.waiting, token)
		g.mu.Unlock()
	}()
	if err := g.nc.PublishRequest(g.subj, g.prefix+"."+token, body); err != nil {
		return nil, batchEnd{}, classify(err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	var out []Message
	for {
		var m *nats.Msg
		select {
		case m = <-ch:
		case <-ctx.Done():
			return nil, batchEnd{}, classify(ctx.Err())
		}
		if len(m.Data) == 0 && m.Header != nil {
			switch status := m.Header.Get("Status"); status {
			case "204": // end of batch
				var end batchEnd
				end.pending, _ = strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
				end.upTo, _ = strconv.ParseUint(m.Header.Get("Nats-UpTo-Sequence"), 10, 64)
				return out, end, nil
			case "404": // nothing matches
				return out, batchEnd{}, nil
			case "":
			case "503":
				return nil, batchEnd{}, fmt.Errorf("%w: direct get: %s %s", ErrUnavailable, status, m.Header.Get("Description"))
			default:
				return nil, batchEnd{}, fmt.Errorf("direct get: %s %s", status, m.Header.Get("Description"))
			}
		}
		seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return nil, batchEnd{}, fmt.Errorf("direct get: message without a sequence header")
		}
		ts, _ := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
		out = append(out, Message{Seq: seq, Subject: m.Header.Get(jetstream.SubjectHeader), Data: m.Data, Time: ts, Header: m.Header})
	}
}
