package main

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// TestDevMail: in dev, Tenancy's own mail goes through the outbox and the
// provisioner's mailer into the data dir's sink, which GET /dev/mail lists;
// the test message an operator queues arrives there once.
func TestDevMail(t *testing.T) {
	_, p, token, client := startDevTest(t)
	status, _, body, err := call(client, p.api, token, "POST", "/v1/admin/mail/test", `{"to":"ops@example.com"}`)
	if err != nil || status != 202 {
		t.Fatalf("queue a test mail: %d %v %s", status, err, body)
	}
	var queued struct{ ID string }
	if err := json.Unmarshal(body, &queued); err != nil || queued.ID == "" {
		t.Fatalf("answer %s: %v", body, err)
	}
	if status, _, body, _ := call(client, p.api, token, "POST", "/v1/admin/mail/test", `{"to":"Ops <ops@example.com>"}`); status != 422 {
		t.Fatalf("a named address: %d %s", status, body)
	}
	var got struct {
		Items []struct {
			ID, To, Subject, Text string
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		status, _, body, err = call(client, p.api, "", "GET", "/dev/mail?to=ops@example.com", "")
		if err == nil && status == 200 && bytes.Contains(body, []byte(queued.ID)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the test mail never reached the sink: %d %v %s", status, err, body)
		}
	}
	if err := json.Unmarshal(body, &got); err != nil || len(got.Items) != 1 || got.Items[0].ID != queued.ID || got.Items[0].Subject != "Tenancy test mail" {
		t.Fatalf("sink: %s (%v)", body, err)
	}
}
