package httpapi

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/internal/integrity"
)

// QuarantineList is every quarantined message, oldest first.
type QuarantineList struct {
	Items []integrity.Record `json:"items"`
}

func (s *Server) listQuarantine(c echo.Context) error {
	if err := checkParams(c); err != nil {
		return err
	}
	items, err := s.deps.Integrity.Quarantined(c.Request().Context())
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, QuarantineList{Items: items})
}

func quarantineSeq(c echo.Context) (uint64, error) { return seqParam(c, "seq", "quarantined message") }

func (s *Server) getQuarantine(c echo.Context) error {
	seq, err := quarantineSeq(c)
	if err != nil {
		return err
	}
	rec, err := s.deps.Integrity.Quarantine(c.Request().Context(), seq)
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, rec)
}

// ResolveRequest is the body of POST /v1/admin/quarantine/{seq}/resolve.
type ResolveRequest struct {
	Reason string `json:"reason"`
}

func (s *Server) resolveQuarantine(c echo.Context) error {
	seq, err := quarantineSeq(c)
	if err != nil {
		return err
	}
	req, err := bindJSON[ResolveRequest](s, c)
	if err != nil {
		return err
	}
	res, rec, err := s.deps.Integrity.Resolve(c.Request().Context(), seq, req.Reason, actorMeta(c))
	if err != nil {
		return err
	}
	c.Response().Header().Set(SequenceHeader, strconv.FormatUint(res.Seq, 10))
	return writeJSON(c, http.StatusOK, rec)
}
