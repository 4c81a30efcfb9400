package keycloakfake

import (
	"net/http"

	"github.com/tenancyhq/tenancy/internal/faultinject"
)

// Fault describes a failure to inject into matching requests (see
// faultinject.Fault). Here a Status is sent with an errorMessage body,
// Latency always comes before the request is handled, and an AfterHandling
// fault with neither Status nor Drop only delays the real response.
type Fault = faultinject.Fault

// Inject appends a fault. Faults are tried in the order injected, and the
// first matching one with uses left applies.
func (s *Server) Inject(f Fault) { s.faults.Inject(f) }

// ClearFaults removes every fault.
func (s *Server) ClearFaults() { s.faults.Clear() }

// answerFault sends the fault's own outcome. It reports false when the fault
// has none (only Latency), so the caller should send the real response.
func answerFault(w http.ResponseWriter, f *Fault) bool {
	switch {
	case f.Drop:
		faultinject.Drop(w)
		return true
	case f.Status != 0:
		faultinject.SetRetryAfter(w.Header(), f.RetryAfter)
		msg := http.StatusText(f.Status)
		if msg == "" {
			msg = "injected fault"
		}
		errorMessage(f.Status, msg).write(w)
		return true
	}
	return false
}
