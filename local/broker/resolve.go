package broker

import (
	"fmt"
	"net/http"
	"strings"

	duckv1 "knative.dev/pkg/apis/duck/v1"
)

// Services is the all-in-one's Resolver. A ref to a Knative Service
// (serving.knative.dev, kind Service) named n goes in process to
// handlers[n]; its request URL is the one the Service has in a cluster,
// http://n.<namespace>.svc.cluster.local, plus the Destination's relative
// URI if any. An absolute URI without a ref is POSTed to. Anything else
// does not resolve.
func Services(handlers map[string]http.Handler) Resolver {
	return services(func(name string) (Target, bool) {
		h, ok := handlers[name]
		return Target{Handler: h}, ok && h != nil
	})
}

// Receivers is Services for receiver functions: a ref to the Knative
// Service n hands the event, without encoding it, to receivers[n] (the
// trigger's Handle, which its binary serves behind cloudevents'
// HTTP receiver).
func Receivers(receivers map[string]Receiver) Resolver {
	return services(func(name string) (Target, bool) {
		fn, ok := receivers[name]
		return Target{Receive: fn}, ok && fn != nil
	})
}

// services resolves refs to Knative Services through target and absolute
// URIs without a ref to themselves.
func services(target func(name string) (Target, bool)) Resolver {
	return func(dest duckv1.Destination) (Target, error) {
		ref := dest.Ref
		if ref == nil {
			return resolveURI(dest)
		}
		if ref.Kind != "Service" || !strings.HasPrefix(ref.APIVersion, "serving.knative.dev/") {
			return Target{}, fmt.Errorf("cannot resolve %s %s in process: only Knative Services", ref.Kind, ref.Name)
		}
		t, ok := target(ref.Name)
		if !ok {
			return Target{}, fmt.Errorf("no in-process handler for Knative Service %q", ref.Name)
		}
		ns := ref.Namespace
		if ns == "" {
			ns = "default"
		}
		u := "http://" + ref.Name + "." + ns + ".svc.cluster.local"
		if dest.URI != nil {
			u += "/" + strings.TrimPrefix(dest.URI.String(), "/")
		}
		t.URL = u
		return t, nil
	}
}
