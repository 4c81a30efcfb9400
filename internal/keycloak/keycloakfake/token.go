package keycloakfake

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
)

const invalidClientCredentials = "Invalid client or Invalid client credentials"

// token serves the client_credentials grant. The checks run in Keycloak's
// order (realm, grant type, then client authentication), which decides the
// answer when a request is wrong in more than one way.
func (s *Server) token(q *request, realm string) response {
	rs, ok := s.realms[realm]
	if !ok {
		return oauthError(http.StatusNotFound, "Realm does not exist", "")
	}
	if !rs.rep.Enabled {
		return oauthError(http.StatusForbidden, "access_denied", "Realm not enabled")
	}
	switch gt := q.form.Get("grant_type"); gt {
	case "":
		return oauthError(http.StatusBadRequest, "invalid_request", "Missing form parameter: grant_type")
	case "client_credentials":
	default:
		return oauthError(http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant_type")
	}
	id := q.form.Get("client_id")
	if id == "" {
		return oauthError(http.StatusBadRequest, "invalid_client", "Missing client_id parameter")
	}
	// Keycloak distinguishes an unknown client (invalid_client) from a known
	// one with the wrong secret (unauthorized_client). The service account
	// exists only in master.
	if realm != masterRealm || id != s.opts.ClientID {
		return oauthError(http.StatusUnauthorized, "invalid_client", invalidClientCredentials)
	}
	if q.form.Get("client_secret") != s.opts.ClientSecret {
		return oauthError(http.StatusUnauthorized, "unauthorized_client", invalidClientCredentials)
	}

	var b [32]byte
	_, _ = rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	s.tokens[tok] = s.opts.Now().Add(s.opts.TokenTTL)
	s.tokensIssued++
	return jsonOK(map[string]any{
		"access_token":       tok,
		"expires_in":         int(s.opts.TokenTTL.Seconds()),
		"refresh_expires_in": 0,
		"token_type":         "Bearer",
		"not-before-policy":  0,
		"scope":              "profile email",
	})
}

// authorized checks the bearer token against Options.Now, so a test that
// advances its clock past TokenTTL sees the next admin call fail with 401.
func (s *Server) authorized(header string) bool {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	exp, ok := s.tokens[strings.TrimSpace(tok)]
	return ok && s.opts.Now().Before(exp)
}
