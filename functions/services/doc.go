// Package services is kmep's MEC 011 service management function
// (/mep/mec_service_mgmt/v1): registration, discovery, transports and
// service liveness (heartbeats), over the store.
//
// Discovery is served from a store.ServiceCache when one is given and fresh
// (it follows the store's change stream; see store.CacheOptions for the
// staleness bound), else straight from Redis. Writes wait briefly for the
// cache to apply them, so a client reads its own writes on this instance.
// Every call needs an app's Bearer JWT; an app changes only the services of
// its own appInstanceId.
package services
