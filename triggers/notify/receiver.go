package notify

import (
	"net/http"

	"github.com/kmep-io/kmep/store/kit/receiver"
)

// MaxEventBytes bounds the body of an event the receiver accepts.
const MaxEventBytes = receiver.DefaultMaxBytes

// HTTPHandler returns n's CloudEvents HTTP receiver: store/kit/receiver
// over n.Handle, which answers 400 to a request that is not a CloudEvent
// at all or an invalid one, 413 to a body over MaxEventBytes, and 405 to a
// GET, OPTIONS or DELETE.
func HTTPHandler(n *Notifier) http.Handler {
	return receiver.New(n.Handle, receiver.Options{MaxBytes: MaxEventBytes, Log: n.log})
}
