// Package mepagent is the sidecar an app's pod runs next to the app: a
// drop-in for EdgeGallery's mep-agent that talks to kmep (or to any
// platform serving EdgeGallery's Mp1 paths).
//
// From its configuration (the app instance, its AK/SK and
// app_instance_info.yaml, see ParseAppInstanceInfo) the Agent
//
//   - gets a token with an AK/SK-signed POST /mep/token (package aksk) and
//     renews it at 80 % of its lifetime, and at once when the platform
//     answers 401 to it;
//   - registers each service of serviceInfoPosts (POST
//     /mep/mec_service_mgmt/v1/applications/{appInstanceId}/services) and,
//     when it has a liveness interval, heartbeats it (PATCH
//     {"state":"ACTIVE"} on its liveness link, a quarter earlier than the
//     interval); a heartbeat answered 404 means the platform lost the
//     service, which is registered again;
//   - creates each subscription of serAvailabilityNotificationSubscriptions,
//     adopting an equal one the app instance already has;
//   - serves the app GET /mep-agent/v1/token, GET
//     /mep-agent/v1/endpoint/{serName} and GET /healthz (see Handler);
//   - on stop, deletes the services it registered when
//     Config.DeregisterOnStop is set, so that consumers see them REMOVED at
//     once.
//
// It counts its token requests, registrations and heartbeats by outcome
// into Deps.Metrics, which the binary serves as GET /metrics.
//
// Every step is retried with capped exponential backoff and jitter while the
// platform is unreachable or answers 5xx, 429 or 401, and never given up; a
// refusal that no retry can mend (another 4xx, e.g. a 400 on a
// registration) is logged and that step stops. Every attempt of one
// registration or subscription sends the same Idempotency-Key, so a retry
// after a 503 or a lost answer finds what an earlier attempt created on
// kmep instead of creating it twice. The secret key is kept only
// in memory and wiped when Run returns.
package mepagent
