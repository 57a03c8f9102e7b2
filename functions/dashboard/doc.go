// Package dashboard is the operator's web UI and the platform admin's
// read API that the UI needs beyond the MEC APIs.
//
// The UI (index.html, app.js, style.css, embedded) holds no data: a page
// without the admin token shows only its login form. Once the operator
// enters the admin token, the page's JavaScript calls the platform's own
// APIs with it as the Bearer credential, exactly as any client would (no
// side door): the Mp1 APIs the admin may read (services, subscriptions,
// traffic and DNS rules, see rest.Router.AdminReads), the Mm5 APIs
// (packages, instances), and the admin API this package serves under
// BasePath for what has no other API: app instances and their AKs (never
// SKs), every instance's Helm/readiness state, each traffic rule's UPF
// status, mesh peers, dead letters with their redelivery, and the store's
// change stream as server-sent events, on which the page refetches instead
// of reloading (and every 3 s, for dead letters, UPF statuses and mesh
// peers, which the change stream does not carry).
//
// Every admin API request needs the admin token: none is a 401, an app's
// token a 403.
package dashboard
