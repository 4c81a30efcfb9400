package domain

// Commands returns one value of every command type the deciders take: the
// whole set, for what needs to know it in advance (metrics are primed with
// it, so that every command's series exists at 0 from start). A test keeps
// it complete.
func Commands() []any {
	return []any{
		CreateTenant{}, UpdateTenant{}, RequestActivation{}, CancelActivation{}, Suspend{}, Resume{}, Archive{}, Restore{}, Delete{},
		RecordStep{}, FailSaga{}, RetrySaga{}, CompleteSaga{}, RecordRepair{}, RecordAdminPassword{},
		CreateWebhook{}, UpdateWebhook{}, RotateSecret{}, DisableWebhook{}, DeleteWebhook{}, RequeueDeadLetters{}, DiscardDeadLetter{}, RequestReplay{},
		RegisterKey{}, RetireKey{}, SkipEvent{}, ResolveQuarantine{},
		CreateCustomer{}, UpdateCustomer{}, RecordVerification{}, ExpireRekycGrace{}, DeleteCustomer{},
	}
}
