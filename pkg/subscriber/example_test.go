package subscriber_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/tenancyhq/tenancy/pkg/events"
	"github.com/tenancyhq/tenancy/pkg/subscriber"
)

// A billing service's receiver: verify every delivery, act on the event
// types it cares about, acknowledge the rest.
func Example() {
	v, err := subscriber.NewVerifier(subscriber.Config{
		Secrets: []string{exampleSecret}, // the whsec_ secret the API returned
		// Checks the events' own Ed25519 signatures too. Offline here; a
		// receiver would use &subscriber.KeyFetcher{URL:
		// "https://tenancy.example.com/.well-known/tenancy/event-keys.json"}.
		EventKeys: subscriber.StaticKeys(exampleKeys),
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /hooks/tenancy", subscriber.Handler(v, func(ctx context.Context, d *subscriber.Delivery) error {
		// d.ID is the same on every retry and replay: deduplicate on it.
		switch d.Event.Type() {
		case events.TypeTenantSuspended:
			p, err := subscriber.As[*events.TenantSuspended](d.Event)
			if err != nil {
				return err
			}
			fmt.Printf("seq %d: pause billing of %s (%s)\n", d.Sequence, d.TenantID, p.Reason)
		}
		return nil
	}))

	// One delivery, as Tenancy's webhooker sends it.
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, exampleDelivery())
	fmt.Println(rec.Code)
	// Output:
	// seq 42: pause billing of 0197aaaa-0000-7000-8000-000000000009 (payment)
	// 204
}

// Verify suits receivers with their own HTTP stack (or a queue between the
// HTTP endpoint and the worker): headers and body in, a delivery or a
// sentinel error out.
func ExampleVerifier_Verify() {
	v, err := subscriber.NewVerifier(subscriber.Config{Secrets: []string{exampleSecret}})
	if err != nil {
		log.Fatal(err)
	}
	r := exampleDelivery()
	r.Header.Set("webhook-signature", "v1,bm90IGEgc2lnbmF0dXJl")
	_, err = v.VerifyRequest(r)
	fmt.Println(err, subscriber.StatusCode(err))
	// Output: no v1 signature matches any configured secret 401
}
