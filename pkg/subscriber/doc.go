// Package subscriber is for Go services that receive Tenancy's webhooks
// (billing, CRM, support): it verifies a delivery and hands it over as a
// CloudEvent with typed access to its payload, so that no receiver has to
// re-implement the signature scheme, and each gets its subtleties (key
// rotation, clock skew in both directions, constant-time comparison) right.
//
// A delivery is checked in two layers:
//
//   - The Standard Webhooks signature (webhook-id, webhook-timestamp,
//     webhook-signature) against the subscription's secrets. It proves the
//     request came from Tenancy's webhooker and is recent. It is always
//     checked, unless Config.InsecureSkipSignature says otherwise.
//   - Optionally, the event's own Ed25519 signature against the published
//     event keys (/.well-known/tenancy/event-keys.json). It proves the event
//     is the one in Tenancy's log, not merely one the webhooker sent. Set
//     Config.EventKeys to StaticKeys (offline) or a KeyFetcher.
//
// An event larger than the webhooker's body limit arrives without its data
// and with a dataref (Delivery.Truncated): its Ed25519 signature cannot be
// checked from the delivery, and its payload must be fetched from the API
// and passed to Verifier.Event.
//
// Failures are the sentinel errors of this package, and StatusCode maps them
// to the HTTP status a receiver should answer; Handler does all of it. Any
// answer other than 2xx makes the webhooker retry, so a receiver that
// cannot process an event yet should fail rather than acknowledge it.
//
// The package depends only on pkg/events (the event contract) and the
// CloudEvents Go SDK, never on Tenancy's internals.
package subscriber
