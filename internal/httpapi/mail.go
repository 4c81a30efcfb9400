package httpapi

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// TestMailRequest is the body of POST /v1/admin/mail/test.
type TestMailRequest struct {
	To string `json:"to"`
}

// TestMailQueued answers POST /v1/admin/mail/test.
type TestMailQueued struct {
	ID string `json:"id"`
}

func (s *Server) testMail(c echo.Context) error {
	req, err := bindJSON[TestMailRequest](s, c)
	if err != nil {
		return err
	}
	id, err := s.deps.Mail.SendTest(c.Request().Context(), req.To)
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusAccepted, TestMailQueued{ID: id})
}
