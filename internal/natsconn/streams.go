package natsconn

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"

	"github.com/nats-io/nats.go/jetstream"
)

// EnsureStream creates the stream cfg describes, or updates it when what
// is stored differs from cfg, and otherwise leaves it alone. Every
// instance ensures its streams when it starts, usually while others run:
// an update that changes nothing still rewrites the server's stream
// configuration, and one racing another instance's consumer creation on
// that stream is a data race inside nats-server (fileStore.ConsumerStore
// reads the config UpdateConfig writes, unlocked, up to v2.15.3).
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, cfg.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
	case err != nil:
		return nil, err
	case covers(s.CachedInfo().Config, cfg):
		return s, nil
	}
	return js.CreateOrUpdateStream(ctx, cfg)
}

// covers reports whether stored has every setting want makes, want's
// unset limits read as the server stores them (-1: unlimited; one
// replica).
func covers(stored, want jetstream.StreamConfig) bool {
	for _, limit := range []*int64{&want.MaxMsgs, &want.MaxBytes, &want.MaxMsgsPerSubject} {
		if *limit == 0 {
			*limit = -1
		}
	}
	for _, limit := range []*int{&want.MaxConsumers} {
		if *limit == 0 {
			*limit = -1
		}
	}
	if want.MaxMsgSize == 0 {
		want.MaxMsgSize = -1
	}
	if want.Replicas == 0 {
		want.Replicas = 1
	}
	if want.Duplicates == 0 {
		want.Duplicates = stored.Duplicates // the server's default window
	}
	var s, w map[string]any
	if !roundTrip(stored, &s) || !roundTrip(want, &w) {
		return false
	}
	for k, v := range w {
		if !reflect.DeepEqual(s[k], v) {
			return false
		}
	}
	return true
}

func roundTrip(v any, out *map[string]any) bool {
	b, err := json.Marshal(v)
	return err == nil && json.Unmarshal(b, out) == nil
}

// EnsureKeyValue is EnsureStream for a key-value bucket: created when
// missing, updated only when a setting Tenancy makes (description,
// history, TTL, storage, replicas) differs.
func EnsureKeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
	case err != nil:
		return nil, err
	default:
		st, err := kv.Status(ctx)
		if err != nil {
			return nil, err
		}
		if b, ok := st.(*jetstream.KeyValueBucketStatus); ok && sameBucket(b.Config(), cfg) {
			return kv, nil
		}
	}
	return js.CreateOrUpdateKeyValue(ctx, cfg)
}

// sameBucket compares the settings Tenancy's buckets make, want's unset
// ones read as the server stores them.
func sameBucket(stored, want jetstream.KeyValueConfig) bool {
	history, replicas := want.History, want.Replicas
	if history == 0 {
		history = 1
	}
	if replicas == 0 {
		replicas = 1
	}
	return stored.Description == want.Description && stored.History == history && stored.TTL == want.TTL &&
		stored.Storage == want.Storage && stored.Replicas == replicas
}
