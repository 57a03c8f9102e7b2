// Package services is kmep's MEC 011 service management function
// (/mep/mec_service_mgmt/v1): registration, discovery, transports and
// service liveness (heartbeats), over the store.
//
// Discovery is served from a store.ServiceCache when one is given and fresh
// (it follows the store's change stream; see store.CacheOptions for the
// staleness bound), else straight from Redis. Writes wait briefly for the
// cache to apply them, so a client reads its own writes on this instance.
// Every call needs an app's Bearer JWT. Discovery (GET /services,
// /services/{id}) is open to every authenticated app; under
// /applications/{appInstanceId} an app reads and changes only its own
// services, and another app's appInstanceId is a 403.
package services
