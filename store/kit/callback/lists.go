package callback

// Lists is the callback policy's part of a binary's configuration (the
// subscriptions function and the notify trigger): embed it in the binary's
// config struct, which server.Main reads from the environment. Both are
// parsed by ParseAllowList and ParseDenyList.
type Lists struct {
	// CallbackAllow is an AllowList. Zero value: none (the default rules
	// refuse loopback, link-local, metadata and this host's addresses).
	CallbackAllow string `envconfig:"KMEP_CALLBACK_ALLOW" desc:"CIDRs and host names callbacks may reach beyond the default rules (ParseAllowList; unset: none)"`
	// CallbackDeny is a deny list of CIDRs. Zero value: none (private
	// ranges are allowed).
	CallbackDeny string `envconfig:"KMEP_CALLBACK_DENY" desc:"CIDRs refused on top of the default rules (ParseDenyList; unset: none, private ranges allowed)"`
}
