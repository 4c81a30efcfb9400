package app

import (
	"context"
	"fmt"
	"time"

	outbox "github.com/tenancyhq/tenancy/internal/mail"
	"github.com/tenancyhq/tenancy/pkg/domain"
)

// MailQueue queues Tenancy's own mail (internal/mail's Outbox).
type MailQueue interface {
	Enqueue(ctx context.Context, m outbox.Message) error
}

// Mail sends Tenancy's own mail through the outbox.
type Mail struct {
	Queue MailQueue
	NewID func() string
	Now   func() time.Time
}

// SendTest queues a test message to the address to, so that an operator
// can check the relay end to end (the provisioner sends it; its log and
// the tenancy_mail_messages_total series say how that went), and returns
// its id.
func (m *Mail) SendTest(ctx context.Context, to string) (string, error) {
	if m == nil || m.Queue == nil {
		return "", fmt.Errorf("%w: mail is not configured on this instance", domain.ErrUnavailable)
	}
	if outbox.CheckRecipient(to) != nil {
		return "", &domain.ValidationError{Fields: []domain.FieldError{{Field: "to", Message: "must be one plain email address, like ann@example.com"}}}
	}
	id := m.NewID()
	err := m.Queue.Enqueue(ctx, outbox.Message{ID: id, Kind: "test", To: to, CreatedAt: m.Now().UTC(),
		Subject: "Tenancy test mail",
		Text:    "This is a test message from Tenancy.\n\nIf you read it, Tenancy's mail relay works: invitations and sign-up codes will reach people.\n"})
	if err != nil {
		return "", fmt.Errorf("queueing the test mail: %w", err)
	}
	return id, nil
}
