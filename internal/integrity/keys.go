package integrity

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"

	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/pkg/domain"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// LoadKeys reads the event signing keys registered in the log, with their
// retirements. A registration whose public key does not match its key id,
// or that is not an event, registers nothing: garbage on the signing key
// subjects cannot make the log unreadable, only fail to add a key.
func LoadKeys(ctx context.Context, log eventstore.Log) (*events.KeySet, error) {
	msgs, err := log.ReadAll(ctx, events.Subject(events.PlatformTenantID, events.AggregateSigningKey, "*"), 1)
	if err != nil {
		return nil, err
	}
	states := map[string]domain.SigningKey{}
	var order []string
	for _, m := range msgs {
		e, p, err := events.Decode(m.Data)
		if err != nil {
			continue
		}
		_, _, kid, err := events.ParseSubject(m.Subject)
		if err != nil {
			continue
		}
		if _, seen := states[kid]; !seen {
			order = append(order, kid)
		}
		states[kid] = domain.SigningKeyDecider{}.Evolve(states[kid], domain.RecordedFrom(kid, m.Seq, e, p))
	}
	ks := events.NewKeySet()
	for _, kid := range order {
		s := states[kid]
		pub, err := base64.RawURLEncoding.DecodeString(s.PublicKey)
		if err != nil || len(pub) != ed25519.PublicKeySize || events.KeyID(pub) != kid {
			continue
		}
		ks.Add(events.PublicKey{ID: kid, Key: pub, CreatedAt: s.RegisteredAt, RetiredAt: s.RetiredAt, RetiredSeq: s.RetiredSeq})
	}
	return ks, nil
}
