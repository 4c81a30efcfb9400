// Package verify walks the event log and checks what no reader can check
// alone: every event's signature and every aggregate's version sequence and
// hash chain (passing over the messages operators resolved), every
// uniqueness claim's event, and, over the whole log, that no record is
// missing: the stream denies deletes, so its sequences run without a gap
// from 1, and a log never gets shorter than a checkpoint an earlier run
// recorded.
package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/integrity"
	"github.com/tenancyhq/tenancy/pkg/events"
)

// Report summarizes a verification, as far as it got.
type Report struct {
	Events     int
	Aggregates int
	Claims     int
	// Ignored counts the messages passed over because operators resolved
	// them.
	Ignored int
	LastSeq uint64
	Keys    int
}

// Failures of the whole-log checks.
var (
	ErrGap        = errors.New("a record is missing from the log")
	ErrClaim      = errors.New("a uniqueness claim has no event")
	ErrCheckpoint = errors.New("the log is shorter than a checkpoint recorded before")
)

// Options say what to verify.
type Options struct {
	// Filter selects the events (events.AllSubjects for the whole log,
	// events.TenantSubjects(id) for one tenant). Gaps and claims are checked
	// only over the whole log.
	Filter string
	// Keys are the keys trusted to sign.
	Keys *events.KeySet
	// Checkpoint, when set, is a file holding the last sequence and hash a
	// previous run verified: the log must still hold that record, and the
	// file is rewritten with this run's last.
	Checkpoint string
}

// Log verifies the log. The first failure is returned (an
// *events.VerifyError names the event); the report counts what was verified
// up to it.
func Log(ctx context.Context, store *eventstore.Store, keys *events.KeySet, filter string) (Report, error) {
	return Run(ctx, store, Options{Filter: filter, Keys: keys})
}

// Run verifies the log as o says.
func Run(ctx context.Context, store *eventstore.Store, o Options) (Report, error) {
	w := &walk{store: store, o: o, v: events.NewChainVerifier(o.Keys), rep: Report{Keys: len(o.Keys.Keys())}, claims: map[string]uint64{}, ids: map[string]uint64{}}
	whole := o.Filter == events.AllSubjects
	cp, err := readCheckpoint(o.Checkpoint)
	if err != nil {
		return w.rep, err
	}
	if w.resolved, err = resolutions(ctx, store, o.Keys); err != nil {
		return w.rep, err
	}
	filter := o.Filter
	if whole {
		// Every record, claims too: a gap anywhere is a deletion.
		filter = ">"
	}
	if err := w.run(ctx, filter, whole); err != nil {
		return w.rep, err
	}
	if whole {
		if err := w.checkClaims(); err != nil {
			return w.rep, err
		}
	}
	if err := checkpoint(ctx, store, o.Checkpoint, cp, w.rep.LastSeq); err != nil {
		return w.rep, err
	}
	return w.rep, nil
}

// walk is one verification's progress.
type walk struct {
	store    *eventstore.Store
	o        Options
	v        *events.ChainVerifier
	rep      Report
	resolved map[uint64]bool
	// claims maps each claim's event id to the claim's sequence; ids maps
	// each event id to its sequence.
	claims, ids map[string]uint64
}

func (w *walk) run(ctx context.Context, filter string, whole bool) error {
	// The stream's end is taken first and the walk stops there: a live log
	// grows while it is verified, and what is appended meanwhile is the
	// next run's.
	var head uint64
	if whole {
		var err error
		if head, err = w.store.LastSeq(ctx); err != nil {
			return err
		}
	}
	from := uint64(1)
	for {
		msgs, more, err := w.store.Read(ctx, filter, from, 1000)
		if err != nil {
			return fmt.Errorf("reading the log at seq %d: %w", from, err)
		}
		for _, m := range msgs {
			if whole && m.Seq > head {
				more = false
				break
			}
			if whole && m.Seq != w.rep.LastSeq+1 {
				return fmt.Errorf("%w: stream sequences %d to %d are gone (the stream denies deletes: the store lost them)", ErrGap, w.rep.LastSeq+1, m.Seq-1)
			}
			if err := w.next(m); err != nil {
				return err
			}
			w.rep.LastSeq = m.Seq
		}
		if !more || len(msgs) == 0 {
			break
		}
		from = msgs[len(msgs)-1].Seq + 1
	}
	if !whole {
		return nil
	}
	if head != w.rep.LastSeq {
		return fmt.Errorf("%w: the stream ends at %d but its records end at %d", ErrGap, head, w.rep.LastSeq)
	}
	return nil
}

// next verifies one record.
func (w *walk) next(m eventstore.Message) error {
	if claim, ok := claimOf(m); ok {
		w.claims[claim] = m.Seq
		w.rep.Claims++
		return nil
	}
	if w.resolved[m.Seq] {
		w.rep.Ignored++
		return nil
	}
	if err := w.v.Next(m.Seq, m.Subject, m.Data); err != nil {
		return err
	}
	if e, err := events.Parse(m.Data); err == nil {
		w.ids[e.ID] = m.Seq
	}
	w.rep.Events, w.rep.Aggregates = w.v.Count(), w.v.Aggregates()
	return nil
}

// checkClaims checks that every claim was appended with the event that
// made it (in the same atomic batch, so after it).
func (w *walk) checkClaims() error {
	for eventID, seq := range w.claims {
		at, ok := w.ids[eventID]
		if !ok || at < seq {
			return fmt.Errorf("%w: the claim at stream seq %d names event %s, which is not in the log after it", ErrClaim, seq, eventID)
		}
	}
	return nil
}

// claimOf returns the event id a claim record was appended with.
func claimOf(m eventstore.Message) (string, bool) {
	if len(m.Subject) < len("tenancy.claim.") || m.Subject[:len("tenancy.claim.")] != "tenancy.claim." {
		return "", false
	}
	var r eventstore.ClaimRecord
	if json.Unmarshal(m.Data, &r) != nil {
		return "", true // an unreadable claim names no event: checkClaims fails it
	}
	return r.EventID, true
}

// resolutions returns the sequences operators resolved, from signed
// resolution events only.
func resolutions(ctx context.Context, store *eventstore.Store, keys *events.KeySet) (map[uint64]bool, error) {
	msgs, err := store.ReadAll(ctx, integrity.ResolutionSubjects, 1)
	if err != nil {
		return nil, err
	}
	return integrity.Resolved(msgs, keys), nil
}

// savedCheckpoint is what a checkpoint file holds.
type savedCheckpoint struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

func readCheckpoint(path string) (*savedCheckpoint, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var cp savedCheckpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return &cp, nil
}

// checkpoint checks the log still holds the record a previous run ended at,
// unchanged, and records where this run ended.
func checkpoint(ctx context.Context, store *eventstore.Store, path string, prev *savedCheckpoint, last uint64) error {
	if path == "" {
		return nil
	}
	if prev != nil && prev.Seq > 0 {
		m, err := store.Get(ctx, prev.Seq)
		switch {
		case errors.Is(err, eventstore.ErrNotFound):
			return fmt.Errorf("%w: a previous run verified up to seq %d, which the log no longer holds", ErrCheckpoint, prev.Seq)
		case err != nil:
			return err
		case events.HashCanonical(m.Data).String() != prev.Hash:
			return fmt.Errorf("%w: the record at seq %d is not the one a previous run verified", ErrCheckpoint, prev.Seq)
		}
	}
	if last == 0 {
		return nil
	}
	m, err := store.Get(ctx, last)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(savedCheckpoint{Seq: last, Hash: events.HashCanonical(m.Data).String()})
	return os.WriteFile(path, append(b, '\n'), 0o600)
}
