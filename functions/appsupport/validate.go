package appsupport

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/kmep-io/kmep/store/mec"
)

func fieldErr(field, format string, args ...any) *mec.FieldError {
	return &mec.FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

func oneOf(field, v string, allowed []string) error {
	if v == "" {
		return fieldErr(field, "is required")
	}
	if !slices.Contains(allowed, v) {
		return fieldErr(field, "must be one of %s, not %q", strings.Join(allowed, ", "), v)
	}
	return nil
}

// id checks a required identifier or name: present, at most
// mec.MaxNameLen bytes, no control characters (mec.CheckName).
func id(field, v string) error { return mec.CheckName(field, v, true) }

// appInfo types the AppInfo members kmep knows (MEC 011 3.1.1 clause
// 7.1.2.6) so that a mistyped one is refused; the stored body keeps every
// member as sent.
type appInfo struct {
	AppName            string              `json:"appName"`
	AppProvider        string              `json:"appProvider"`
	AppCategory        *mec.CategoryRef    `json:"appCategory"`
	AppDID             string              `json:"appDId"`
	AppInstanceID      string              `json:"appInstanceId"`
	Endpoint           *mec.EndPointInfo   `json:"endpoint"`
	AppServiceRequired []serviceDependency `json:"appServiceRequired"`
	AppServiceOptional []serviceDependency `json:"appServiceOptional"`
	AppFeatureRequired []featureDependency `json:"appFeatureRequired"`
	AppFeatureOptional []featureDependency `json:"appFeatureOptional"`
	IsInsByMec         *bool               `json:"isInsByMec"`
	AppProfile         map[string]any      `json:"appProfile"`
}

type serviceDependency struct {
	SerName                  string           `json:"serName"`
	SerCategory              *mec.CategoryRef `json:"serCategory"`
	Version                  string           `json:"version"`
	SerTransportDependencies []map[string]any `json:"serTransportDependencies"`
	RequestedPermissions     json.RawMessage  `json:"requestedPermissions"`
}

type featureDependency struct {
	FeatureName string `json:"featureName"`
	Version     string `json:"version"`
}

// DecodeAppInfo reads and validates an AppInfo (MEC 011 3.1.1; the wrapper
// object is tolerated). appName and appInstanceId are required (kmep's app
// instances are all instantiated by MEC management); endpoint is required
// when isInsByMec is false or absent (MEC 011: "shall be present when
// isInsByMec is FALSE", which is its default) and must then name uris,
// fqdn, addresses or alternative; the names kmep knows (appName,
// appProvider, appDId, appInstanceId, the dependencies' names and
// versions) hold no control characters; the members kmep knows must have
// their types; every member is kept. It returns the appInstanceId and the
// canonical JSON (members in name order).
func DecodeAppInfo(raw []byte) (string, []byte, error) {
	var ai appInfo
	if err := mec.DecodeBytes(raw, "AppInfo", &ai); err != nil {
		return "", nil, err
	}
	var members map[string]json.RawMessage
	if err := mec.DecodeBytes(raw, "AppInfo", &members); err != nil {
		return "", nil, err
	}
	if err := id("appName", ai.AppName); err != nil {
		return "", nil, err
	}
	if err := id("appInstanceId", ai.AppInstanceID); err != nil {
		return "", nil, err
	}
	for _, f := range [][2]string{{"appProvider", ai.AppProvider}, {"appDId", ai.AppDID}} {
		if err := mec.CheckName(f[0], f[1], false); err != nil {
			return "", nil, err
		}
	}
	for _, l := range []struct {
		name string
		deps []serviceDependency
	}{{"appServiceRequired", ai.AppServiceRequired}, {"appServiceOptional", ai.AppServiceOptional}} {
		for i, d := range l.deps {
			if err := id(fmt.Sprintf("%s[%d].serName", l.name, i), d.SerName); err != nil {
				return "", nil, err
			}
			if err := id(fmt.Sprintf("%s[%d].version", l.name, i), d.Version); err != nil {
				return "", nil, err
			}
		}
	}
	for _, l := range []struct {
		name  string
		feats []featureDependency
	}{{"appFeatureRequired", ai.AppFeatureRequired}, {"appFeatureOptional", ai.AppFeatureOptional}} {
		for i, f := range l.feats {
			if err := id(fmt.Sprintf("%s[%d].featureName", l.name, i), f.FeatureName); err != nil {
				return "", nil, err
			}
			if err := id(fmt.Sprintf("%s[%d].version", l.name, i), f.Version); err != nil {
				return "", nil, err
			}
		}
	}
	if ai.IsInsByMec == nil || !*ai.IsInsByMec {
		if ai.Endpoint == nil {
			return "", nil, fieldErr("endpoint", "is required when isInsByMec is false or absent")
		}
	}
	if ai.Endpoint != nil {
		if err := mec.ValidateEndPoint("endpoint", ai.Endpoint); err != nil {
			return "", nil, err
		}
	}
	body, err := json.Marshal(members) // compacts each member

	return ai.AppInstanceID, body, err
}
