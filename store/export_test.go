package store

// Test hooks: the one definition of the change-stream entry and of the
// liveness deadline, as the scripts receive them.
var (
	ChangeFieldNames = fieldNames(changeFields)
	ChangeLua        = changeLua
	LivenessLua      = livenessLua
)
