package subscriber_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/tenancyhq/tenancy/pkg/events"
)

// exampleSecret is the subscription secret of the examples (base64 of "an
// example secret, never a real one").
const exampleSecret = "whsec_YW4gZXhhbXBsZSBzZWNyZXQsIG5ldmVyIGEgcmVhbCBvbmU="

// exampleSigner stands for Tenancy's event signing key in the examples.
var exampleSigner = func() *events.Signer {
	s, err := events.NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)))
	if err != nil {
		panic(err)
	}
	return s
}()

// exampleKeys is the published key set of exampleSigner.
var exampleKeys = events.NewKeySet(events.PublicKey{Key: exampleSigner.PublicKey()})

// exampleDelivery builds the request Tenancy's webhooker would send for a
// tenant suspension, so that the examples can run without a network.
func exampleDelivery() *http.Request {
	data, _ := json.Marshal(&events.TenantSuspended{Reason: "payment"})
	body, _, err := exampleSigner.Sign(&events.Envelope{
		SpecVersion: events.SpecVersion, ID: eventID, Source: events.Source, Type: events.TypeTenantSuspended,
		Subject: tenantID, Time: time.Now(), DataContentType: events.ContentType,
		TenantID: tenantID, Actor: "user-1", AggVersion: 4, Data: data,
	})
	if err != nil {
		panic(err)
	}
	wh, err := standardwebhooks.NewWebhook(exampleSecret)
	if err != nil {
		panic(err)
	}
	ts := time.Now()
	sig, err := wh.Sign(eventID, ts, body)
	if err != nil {
		panic(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/hooks/tenancy", bytes.NewReader(body))
	r.Header.Set("content-type", "application/cloudevents+json")
	r.Header.Set("webhook-id", eventID)
	r.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	r.Header.Set("webhook-signature", sig)
	r.Header.Set("tenancy-sequence", "42")
	r.Header.Set("tenancy-attempt", "1")
	return r
}
