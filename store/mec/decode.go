package mec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// FieldError is a refused request member.
type FieldError struct {
	// Field is the JSON path of the member, e.g. "transportInfo.type".
	Field string
	// Reason says what is wrong with it.
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// MaxNameLen bounds serName, version, ids, hosts and similar strings.
const MaxNameLen = 256

// MaxURILen bounds each URI of an EndPointInfo.
const MaxURILen = 2048

// MaxLivenessInterval is the largest livenessInterval a ServiceInfo may
// propose, in seconds (one day): a larger one is refused, so that no
// service escapes the reaper by proposing a heartbeat it never needs to
// send.
const MaxLivenessInterval = 86400

// DecodeBytes reads one JSON value from raw into v. Syntax errors, type
// mismatches and trailing data become a *FieldError. A body that is exactly
// {"<wrapper>": {...}} (how MEC 011 v3.1.1 writes bodies) is unwrapped
// first.
//
// What encoding/json would accept but change is refused too, with a
// *FieldError naming the member: a null body, a string that is not valid
// UTF-8 (encoding/json would store U+FFFD instead), a control character
// other than tab, line feed and carriage return in any string, and null as
// an array item (it would become {} or "").
func DecodeBytes(raw []byte, wrapper string, v any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return fieldErr("body", "a JSON object is required")
	}
	if wrapper != "" && bytes.HasPrefix(bytes.TrimLeft(raw[1:], " \t\r\n"), []byte(`"`+wrapper+`"`)) {
		var w map[string]json.RawMessage
		if json.Unmarshal(raw, &w) == nil && len(w) == 1 {
			if inner, ok := w[wrapper]; ok {
				raw = inner
			}
		}
	}
	if bytes.Equal(raw, []byte("null")) {
		return fieldErr("body", "a JSON object is required, not null")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			f := te.Field
			if f == "" {
				f = "body"
			}
			return fieldErr(f, "must be %s, not a JSON %s", jsonKind(te.Type.Kind().String()), te.Value)
		case errors.As(err, &se):
			return fieldErr("body", "malformed JSON at offset %d", se.Offset)
		}
		return fieldErr("body", "malformed JSON: %v", err)
	}
	// dec.More would miss a stray '}' or ']': anything but the end of the
	// input after the value is trailing data.
	if _, err := dec.Token(); err != io.EOF {
		return fieldErr("body", "unexpected data after the JSON object")
	}
	return checkText(raw)
}

// emptyJSON reports whether m is absent, null or an empty object: what
// EdgeGallery sends for members it has nothing to put in.
func emptyJSON(m json.RawMessage) bool {
	if len(bytes.TrimSpace(m)) == 0 {
		return true
	}
	var b bytes.Buffer
	if json.Compact(&b, m) != nil {
		return false
	}
	return b.String() == "null" || b.String() == "{}"
}

// emptyTransport reports whether t carries nothing at all: how EdgeGallery's
// mep-agent marshals its (non-pointer) transportInfo when the app names a
// platform transport by transportId instead.
func emptyTransport(t *TransportInfo) bool {
	if t.ID != "" || t.Name != "" || t.Description != "" || t.Type != "" || t.Protocol != "" || t.Version != "" {
		return false
	}
	if e := t.Endpoint; e != nil && (len(e.URIs) > 0 || len(e.FQDN) > 0 || len(e.Addresses) > 0 || !emptyJSON(e.Alternative)) {
		return false
	}
	if s := t.Security; s != nil && s.OAuth2Info != nil && (len(s.OAuth2Info.GrantTypes) > 0 || s.OAuth2Info.TokenEndpoint != "") {
		return false
	}
	return emptyJSON(t.ImplSpecificInfo)
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "struct", "map", "ptr":
		return "an object"
	}
	if strings.HasPrefix(k, "int") || strings.HasPrefix(k, "uint") || strings.HasPrefix(k, "float") {
		return "a number in range"
	}
	return k
}

func oneOf(field, v string, allowed []string) error {
	if !slices.Contains(allowed, v) {
		return fieldErr(field, "must be one of %s, not %q", strings.Join(allowed, ", "), v)
	}
	return nil
}

// bounded checks a name-like string (a name, version, id, host, URI):
// present when required, at most MaxNameLen bytes, and without control
// characters (CR, LF and tab included: a name is one line).
func bounded(field, v string, required bool) error {
	if required && strings.TrimSpace(v) == "" {
		return fieldErr(field, "is required")
	}
	if len(v) > MaxNameLen {
		return fieldErr(field, "is longer than %d bytes", MaxNameLen)
	}
	if hasControl(v) {
		return fieldErr(field, "must not contain control characters")
	}
	return nil
}

// CheckName checks a name-like string member as the decoders do: present
// when required, at most MaxNameLen bytes, no control characters (CR, LF
// and tab included). Errors are *FieldError naming field.
func CheckName(field, v string, required bool) error { return bounded(field, v, required) }

// queryable refuses what would make a serName or category id impossible to
// find with GET /services: path and query delimiters, NUL, the comma that
// separates values of ser_name and ser_category_id, and white space at
// either end (trimmed from those values).
func queryable(field, v string) error {
	if strings.ContainsAny(v, "/?#,\x00") {
		return fieldErr(field, "must not contain '/', '?', '#', ',' or NUL")
	}
	if strings.TrimSpace(v) != v {
		return fieldErr(field, "must not start or end with white space")
	}
	return nil
}

// DecodeServiceInfo reads a ServiceInfo from a request body and normalises
// it: empty optional members become absent (EdgeGallery sends "" and empty
// objects), request-only or response-only members (_links, serInstanceId in
// POST) are dropped by the caller. It validates what MEC 011 requires.
// platformTransport, when non-nil, resolves a transportId to the
// platform-provided transport.
func DecodeServiceInfo(raw []byte, platformTransport func(id string) *TransportInfo) (ServiceInfo, error) {
	var si ServiceInfo
	if err := DecodeBytes(raw, "ServiceInfo", &si); err != nil {
		return ServiceInfo{}, err
	}
	si.Links = nil
	if c := si.SerCategory; c != nil && *c == (CategoryRef{}) {
		si.SerCategory = nil
	}
	if err := bounded("serName", si.SerName, true); err != nil {
		return si, err
	}
	if err := queryable("serName", si.SerName); err != nil {
		return si, err
	}
	if err := bounded("version", si.Version, true); err != nil {
		return si, err
	}
	if si.State == "" {
		return si, fieldErr("state", "is required")
	}
	if err := oneOf("state", si.State, []string{"ACTIVE", "INACTIVE"}); err != nil {
		return si, err
	}
	if si.Serializer == "" {
		return si, fieldErr("serializer", "is required")
	}
	if err := oneOf("serializer", si.Serializer, SerializerTypes); err != nil {
		return si, err
	}
	if si.ScopeOfLocality != "" {
		if err := oneOf("scopeOfLocality", si.ScopeOfLocality, LocalityTypes); err != nil {
			return si, err
		}
	}
	if si.LivenessInterval < 0 || si.LivenessInterval > MaxLivenessInterval {
		return si, fieldErr("livenessInterval", "must be 0..%d seconds, not %d", MaxLivenessInterval, si.LivenessInterval)
	}
	if c := si.SerCategory; c != nil {
		for _, f := range []struct {
			name, v  string
			required bool
		}{{"href", c.Href, false}, {"id", c.ID, true}, {"name", c.Name, true}, {"version", c.Version, false}} {
			if err := bounded("serCategory."+f.name, f.v, f.required); err != nil {
				return si, err
			}
		}
		if err := queryable("serCategory.id", c.ID); err != nil {
			return si, err
		}
	}
	// MEC 011: transportId or transportInfo, not both. EdgeGallery sends both
	// (or transportId "", or a transportInfo of empty members beside a
	// transportId); a transportInfo with something in it wins.
	if si.TransportInfo != nil && emptyTransport(si.TransportInfo) {
		si.TransportInfo = nil
	}
	switch {
	case si.TransportInfo != nil:
		si.TransportID = ""
		if err := validateTransport(si.TransportInfo); err != nil {
			return si, err
		}
	case si.TransportID != "":
		if platformTransport == nil {
			return si, fieldErr("transportId", "names no platform-provided transport")
		}
		ti := platformTransport(si.TransportID)
		if ti == nil {
			return si, fieldErr("transportId", "names no platform-provided transport (see GET /transports)")
		}
		si.TransportInfo = ti
	default:
		return si, fieldErr("transportInfo", "is required (or a transportId from GET /transports)")
	}
	return si, nil
}

// ValidateEndPoint checks an EndPointInfo at field (its JSON path):
// present, with uris, fqdn, addresses or alternative; each URI non-empty,
// at most MaxURILen bytes and without control characters; each FQDN and
// host a non-empty name (CheckName); each port 1..65535. A null or {}
// alternative becomes absent. Errors are *FieldError naming the member.
func ValidateEndPoint(field string, e *EndPointInfo) error {
	if e == nil {
		return fieldErr(field, "is required")
	}
	if emptyJSON(e.Alternative) {
		e.Alternative = nil // "alternative": null or {} says nothing
	}
	if len(e.URIs) == 0 && len(e.FQDN) == 0 && len(e.Addresses) == 0 && len(e.Alternative) == 0 {
		return fieldErr(field, "needs uris, fqdn, addresses or alternative")
	}
	for _, l := range []struct {
		name string
		vs   []string
		max  int
	}{{"uris", e.URIs, MaxURILen}, {"fqdn", e.FQDN, MaxNameLen}} {
		for i, v := range l.vs {
			name := fmt.Sprintf("%s.%s[%d]", field, l.name, i)
			switch {
			case strings.TrimSpace(v) == "":
				return fieldErr(name, "must not be empty")
			case len(v) > l.max:
				return fieldErr(name, "is longer than %d bytes", l.max)
			case hasControl(v):
				return fieldErr(name, "must not contain control characters")
			}
		}
	}
	for i, a := range e.Addresses {
		if err := bounded(fmt.Sprintf("%s.addresses[%d].host", field, i), a.Host, true); err != nil {
			return err
		}
		if a.Port == 0 || a.Port > 65535 {
			return fieldErr(fmt.Sprintf("%s.addresses[%d].port", field, i), "must be 1..65535")
		}
	}
	return nil
}

func validateTransport(t *TransportInfo) error {
	for _, f := range [][2]string{{"id", t.ID}, {"name", t.Name}, {"protocol", t.Protocol}, {"version", t.Version}} {
		if err := bounded("transportInfo."+f[0], f[1], true); err != nil {
			return err
		}
	}
	if len(t.Description) > 4*MaxNameLen {
		return fieldErr("transportInfo.description", "is too long")
	}
	if t.Type == "" {
		return fieldErr("transportInfo.type", "is required")
	}
	if err := oneOf("transportInfo.type", t.Type, TransportTypes); err != nil {
		return err
	}
	if err := ValidateEndPoint("transportInfo.endpoint", t.Endpoint); err != nil {
		return err
	}
	if emptyJSON(t.ImplSpecificInfo) {
		t.ImplSpecificInfo = nil
	}
	if t.Security == nil {
		// Required by MEC 011; an absent security object means none.
		t.Security = &SecurityInfo{}
	}
	if o := t.Security.OAuth2Info; o != nil {
		if len(o.GrantTypes) == 0 && o.TokenEndpoint == "" {
			t.Security.OAuth2Info = nil // EdgeGallery's empty object
			return nil
		}
		if len(o.GrantTypes) == 0 || len(o.GrantTypes) > 4 {
			return fieldErr("transportInfo.security.oAuth2Info.grantTypes", "needs 1 to 4 grant types")
		}
		for i, g := range o.GrantTypes {
			if err := oneOf(fmt.Sprintf("transportInfo.security.oAuth2Info.grantTypes[%d]", i), g, GrantTypes); err != nil {
				return err
			}
		}
		if err := bounded("transportInfo.security.oAuth2Info.tokenEndpoint", o.TokenEndpoint, true); err != nil {
			return err
		}
	}
	return nil
}
