package eventstore

// ParsePubAck exposes parsePubAck to tests.
var ParsePubAck = parsePubAck
