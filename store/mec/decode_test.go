package mec_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/store/mec"
)

// edgeGalleryPayload is a ServiceInfo exactly as EdgeGallery's mep-agent
// marshals it (its Go struct, with transportId beside transportInfo, an
// empty implSpecificInfo and the _links it reads the heartbeat path from).
const edgeGalleryPayload = `{"serName":"ExampleService10","serCategory":{"href":"/example/catalogue1","id":"57d7a5e4-7e79-4a2a-9a8a-0f4ad5a9e1c7","name":"RNI","version":"1.0.2"},"version":"1.0.1","state":"ACTIVE","transportId":"6aca7ffe-8bfb-4a27-9a6f-2b0d1cbd4a50","transportInfo":{"id":"6aca7ffe-8bfb-4a27-9a6f-2b0d1cbd4a50","name":"REST","description":"REST API","type":"REST_HTTP","protocol":"HTTP","version":"2.0","endpoint":{"addresses":[{"host":"10.0.0.1","port":30005}]},"security":{"oAuth2Info":{"grantTypes":["OAUTH2_CLIENT_CREDENTIALS"],"tokenEndpoint":"/mecSerMgmtApi/security/TokenEndPoint"}},"implSpecificInfo":{}},"serializer":"JSON","scopeOfLocality":"MEC_SYSTEM","consumedLocalOnly":false,"isLocal":true,"livenessInterval":10,"_links":{"self":{"liveness":""}}}`

// emptyTransportInfo is mep-agent's transportInfo when the app gave none:
// its struct is not a pointer, so every member is there and empty.
const emptyTransportInfo = `{"id":"","name":"","description":"","type":"","protocol":"","version":"","endpoint":{"addresses":null},"security":{"oAuth2Info":{"grantTypes":null,"tokenEndpoint":""}},"implSpecificInfo":{}}`

// platformID names the one transport the test resolver knows.
const platformID = "platform-rest"

func platformTransport(id string) *mec.TransportInfo {
	if id != platformID {
		return nil
	}
	return &mec.TransportInfo{ID: platformID, Name: "REST", Type: "REST_HTTP", Protocol: "HTTP", Version: "1.1",
		Endpoint: &mec.EndPointInfo{URIs: []string{"/mep"}},
		Security: &mec.SecurityInfo{OAuth2Info: &mec.OAuth2Info{GrantTypes: []string{"OAUTH2_CLIENT_CREDENTIALS"}, TokenEndpoint: "/mep/token"}}}
}

// edit sets (or with del, removes) the member at a dotted path; numeric
// segments index arrays.
type edit struct {
	path string
	val  any
	del  bool
}

func set(path string, v any) edit { return edit{path: path, val: v} }
func del(path string) edit        { return edit{path: path, del: true} }

// raw is a JSON value spliced in as it is.
type raw string

// patch applies edits to a JSON object and returns the result.
func patch(base string, edits ...edit) string {
	var doc any
	if err := json.Unmarshal([]byte(base), &doc); err != nil {
		panic(err)
	}
	for _, e := range edits {
		segs := strings.Split(e.path, ".")
		cur := doc
		for _, s := range segs[:len(segs)-1] {
			switch c := cur.(type) {
			case map[string]any:
				cur = c[s]
			case []any:
				i, _ := strconv.Atoi(s)
				cur = c[i]
			}
		}
		last := segs[len(segs)-1]
		val := e.val
		if r, ok := val.(raw); ok {
			if err := json.Unmarshal([]byte(r), &val); err != nil {
				panic(fmt.Sprintf("raw %q: %v", r, err))
			}
		}
		switch c := cur.(type) {
		case map[string]any:
			if e.del {
				delete(c, last)
			} else {
				c[last] = val
			}
		case []any:
			i, _ := strconv.Atoi(last)
			c[i] = val
		default:
			panic("patch: no container at " + e.path)
		}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// decodeCase is one DecodeServiceInfo input and its expected outcome.
type decodeCase struct {
	name string
	body string
	// noResolver decodes without a platform-transport resolver.
	noResolver bool
	// field is the FieldError.Field expected; "" means accepted.
	field string
	// check, when set, inspects an accepted result.
	check func(t *testing.T, si mec.ServiceInfo)
}

func decodeCases() []decodeCase {
	eg := edgeGalleryPayload
	long := strings.Repeat("x", mec.MaxNameLen+1)
	return []decodeCase{
		{name: "edgegallery mep-agent payload", body: eg, check: func(t *testing.T, si mec.ServiceInfo) {
			f := false
			want := mec.ServiceInfo{
				SerName:     "ExampleService10",
				SerCategory: &mec.CategoryRef{Href: "/example/catalogue1", ID: "57d7a5e4-7e79-4a2a-9a8a-0f4ad5a9e1c7", Name: "RNI", Version: "1.0.2"},
				Version:     "1.0.1",
				State:       "ACTIVE",
				TransportInfo: &mec.TransportInfo{ID: "6aca7ffe-8bfb-4a27-9a6f-2b0d1cbd4a50", Name: "REST", Description: "REST API",
					Type: "REST_HTTP", Protocol: "HTTP", Version: "2.0",
					Endpoint: &mec.EndPointInfo{Addresses: []mec.Address{{Host: "10.0.0.1", Port: 30005}}},
					Security: &mec.SecurityInfo{OAuth2Info: &mec.OAuth2Info{GrantTypes: []string{"OAUTH2_CLIENT_CREDENTIALS"},
						TokenEndpoint: "/mecSerMgmtApi/security/TokenEndPoint"}}},
				Serializer:        "JSON",
				ScopeOfLocality:   "MEC_SYSTEM",
				ConsumedLocalOnly: &f,
				IsLocal:           ptr(true),
				LivenessInterval:  10,
			}
			if !reflect.DeepEqual(si, want) {
				t.Errorf("got  %s\nwant %s", js(si), js(want))
			}
		}},
		{name: "wrapper form", body: `{"ServiceInfo":` + eg + `}`, check: func(t *testing.T, si mec.ServiceInfo) {
			if si.SerName != "ExampleService10" || si.TransportInfo == nil {
				t.Errorf("wrapper not unwrapped: %s", js(si))
			}
		}},
		{name: "wrapper form with white space", body: "{ \n \"ServiceInfo\" :\t" + eg + " }", check: func(t *testing.T, si mec.ServiceInfo) {
			if si.SerName != "ExampleService10" {
				t.Errorf("wrapper not unwrapped: %s", js(si))
			}
		}},
		{name: "surrounding whitespace", body: "\n\t " + eg + " \r\n"},
		{name: "empty strings for absent members", body: patch(eg, set("scopeOfLocality", ""), set("transportId", ""),
			set("serInstanceId", ""), set("transportInfo.description", "")), check: func(t *testing.T, si mec.ServiceInfo) {
			if si.ScopeOfLocality != "" || si.TransportID != "" || si.SerInstanceID != "" {
				t.Errorf("empty members not kept empty: %s", js(si))
			}
		}},
		{name: "empty _links object", body: patch(eg, set("_links", raw(`{}`))), check: func(t *testing.T, si mec.ServiceInfo) {
			if si.Links != nil {
				t.Errorf("_links kept: %s", js(si))
			}
		}},
		{name: "serCategory of empty strings", body: patch(eg, set("serCategory", raw(`{"href":"","id":"","name":"","version":""}`))),
			check: func(t *testing.T, si mec.ServiceInfo) {
				if si.SerCategory != nil {
					t.Errorf("empty serCategory kept: %+v", si.SerCategory)
				}
			}},
		{name: "serCategory null", body: patch(eg, set("serCategory", nil))},
		{name: "implSpecificInfo null", body: patch(eg, set("transportInfo.implSpecificInfo", nil)),
			check: func(t *testing.T, si mec.ServiceInfo) {
				if si.TransportInfo.ImplSpecificInfo != nil {
					t.Errorf("implSpecificInfo kept: %s", si.TransportInfo.ImplSpecificInfo)
				}
			}},
		{name: "implSpecificInfo spaced empty object", body: strings.Replace(eg, `"implSpecificInfo":{}`, `"implSpecificInfo":{ }`, 1),
			check: func(t *testing.T, si mec.ServiceInfo) {
				if si.TransportInfo.ImplSpecificInfo != nil {
					t.Errorf("implSpecificInfo kept: %q", si.TransportInfo.ImplSpecificInfo)
				}
			}},
		{name: "implSpecificInfo with content kept", body: patch(eg, set("transportInfo.implSpecificInfo", raw(`{"a":1}`))),
			check: func(t *testing.T, si mec.ServiceInfo) {
				if string(si.TransportInfo.ImplSpecificInfo) != `{"a":1}` {
					t.Errorf("implSpecificInfo = %q", si.TransportInfo.ImplSpecificInfo)
				}
			}},
		{name: "oAuth2Info without grant types or endpoint", body: patch(eg, set("transportInfo.security.oAuth2Info", raw(`{"grantTypes":[],"tokenEndpoint":""}`))),
			check: func(t *testing.T, si mec.ServiceInfo) {
				if si.TransportInfo.Security == nil || si.TransportInfo.Security.OAuth2Info != nil {
					t.Errorf("security = %s", js(si.TransportInfo.Security))
				}
			}},
		{name: "oAuth2Info with null grant types", body: patch(eg, set("transportInfo.security.oAuth2Info", raw(`{"grantTypes":null,"tokenEndpoint":""}`)))},
		{name: "security absent means none", body: patch(eg, del("transportInfo.security")), check: func(t *testing.T, si mec.ServiceInfo) {
			if si.TransportInfo.Security == nil || si.TransportInfo.Security.OAuth2Info != nil {
				t.Errorf("security = %s", js(si.TransportInfo.Security))
			}
		}},
		{name: "transportId without transportInfo", body: patch(eg, del("transportInfo"), set("transportId", platformID)),
			check: func(t *testing.T, si mec.ServiceInfo) {
				if si.TransportInfo == nil || si.TransportInfo.ID != platformID {
					t.Errorf("transportId not resolved: %s", js(si))
				}
			}},
		{name: "transportId beside mep-agent's empty transportInfo", body: patch(eg, set("transportInfo", raw(emptyTransportInfo)), set("transportId", platformID)),
			check: func(t *testing.T, si mec.ServiceInfo) {
				if si.TransportInfo == nil || si.TransportInfo.ID != platformID {
					t.Errorf("transportId not resolved: %s", js(si))
				}
			}},
		{name: "transportInfo wins over an unknown transportId", body: patch(eg, set("transportId", "whatever"))},
		{name: "endpoint uris", body: patch(eg, set("transportInfo.endpoint", raw(`{"uris":["http://10.0.0.1:8080/api"]}`)))},
		{name: "endpoint fqdn", body: patch(eg, set("transportInfo.endpoint", raw(`{"fqdn":["svc.example"]}`)))},
		{name: "endpoint alternative", body: patch(eg, set("transportInfo.endpoint", raw(`{"alternative":{"queue":"x"}}`)))},
		{name: "endpoint addresses beside null alternative", body: patch(eg, set("transportInfo.endpoint.alternative", nil)),
			check: func(t *testing.T, si mec.ServiceInfo) {
				if si.TransportInfo.Endpoint.Alternative != nil {
					t.Errorf("alternative = %q", si.TransportInfo.Endpoint.Alternative)
				}
			}},
		{name: "state INACTIVE", body: patch(eg, set("state", "INACTIVE"))},
		{name: "serializer XML", body: patch(eg, set("serializer", "XML"))},
		{name: "serializer PROTOBUF3", body: patch(eg, set("serializer", "PROTOBUF3"))},
		{name: "no liveness", body: patch(eg, del("livenessInterval"))},
		{name: "port 65535", body: patch(eg, set("transportInfo.endpoint.addresses.0.port", 65535))},
		{name: "every grant type", body: patch(eg, set("transportInfo.security.oAuth2Info.grantTypes", mec.GrantTypes))},
		{name: "minimal v2.1.1 body", body: `{"serName":"a","version":"1","state":"ACTIVE","serializer":"JSON","transportInfo":{"id":"t","name":"n","type":"RPC","protocol":"gRPC","version":"1","endpoint":{"uris":["x"]}}}`},

		// Refused: what MEC 011 requires.
		{name: "serName missing", body: patch(eg, del("serName")), field: "serName"},
		{name: "serName empty", body: patch(eg, set("serName", "")), field: "serName"},
		{name: "serName blank", body: patch(eg, set("serName", "  ")), field: "serName"},
		{name: "serName with slash", body: patch(eg, set("serName", "a/b")), field: "serName"},
		{name: "serName with NUL", body: patch(eg, set("serName", "a\x00b")), field: "serName"},
		{name: "serName with comma", body: patch(eg, set("serName", "a,b")), field: "serName"},
		{name: "serName with leading space", body: patch(eg, set("serName", " a")), field: "serName"},
		{name: "serName with trailing tab", body: patch(eg, set("serName", "a\t")), field: "serName"},
		{name: "serName with inner space", body: patch(eg, set("serName", "Example Service"))},
		{name: "serName too long", body: patch(eg, set("serName", long)), field: "serName"},
		{name: "version missing", body: patch(eg, del("version")), field: "version"},
		{name: "version too long", body: patch(eg, set("version", long)), field: "version"},
		{name: "state missing", body: patch(eg, del("state")), field: "state"},
		{name: "state empty", body: patch(eg, set("state", "")), field: "state"},
		{name: "state SUSPENDED", body: patch(eg, set("state", "SUSPENDED")), field: "state"},
		{name: "state lower case", body: patch(eg, set("state", "active")), field: "state"},
		{name: "serializer missing", body: patch(eg, del("serializer")), field: "serializer"},
		{name: "serializer unknown", body: patch(eg, set("serializer", "YAML")), field: "serializer"},
		{name: "scopeOfLocality unknown", body: patch(eg, set("scopeOfLocality", "WORLD")), field: "scopeOfLocality"},
		{name: "livenessInterval negative", body: patch(eg, set("livenessInterval", -1)), field: "livenessInterval"},
		{name: "livenessInterval at the bound", body: patch(eg, set("livenessInterval", mec.MaxLivenessInterval))},
		{name: "livenessInterval over the bound", body: patch(eg, set("livenessInterval", mec.MaxLivenessInterval+1)), field: "livenessInterval"},
		{name: "livenessInterval max int64", body: strings.Replace(eg, `"livenessInterval":10`, `"livenessInterval":9223372036854775807`, 1), field: "livenessInterval"},
		{name: "livenessInterval beyond int64", body: strings.Replace(eg, `"livenessInterval":10`, `"livenessInterval":9223372036854775808`, 1), field: "livenessInterval"},

		// Refused: text encoding/json would change or keep silently.
		{name: "serName invalid UTF-8", body: strings.Replace(eg, "ExampleService10", "Example\xffService", 1), field: "serName"},
		{name: "serName truncated UTF-8", body: strings.Replace(eg, "ExampleService10", "Example\xc3", 1), field: "serName"},
		{name: "serName overlong UTF-8", body: strings.Replace(eg, "ExampleService10", "Example\xc0\xaf", 1), field: "serName"},
		{name: "serName lone surrogate", body: strings.Replace(eg, "ExampleService10", `Example\ud800`, 1), field: "serName"},
		{name: "serName lone low surrogate", body: strings.Replace(eg, "ExampleService10", `Example\udc00x`, 1), field: "serName"},
		{name: "serName high surrogate before a letter", body: strings.Replace(eg, "ExampleService10", `Example\ud83d\u0041`, 1), field: "serName"},
		{name: "serName surrogate pair", body: strings.Replace(eg, "ExampleService10", `Example\ud83d\ude00`, 1)},
		{name: "serName multi-byte", body: strings.Replace(eg, "ExampleService10", "Exämple服务", 1)},
		{name: "serName escaped NUL", body: strings.Replace(eg, "ExampleService10", `a\u0000b`, 1), field: "serName"},
		{name: "serName CR LF", body: patch(eg, set("serName", "a\r\nb")), field: "serName"},
		{name: "serName LF", body: patch(eg, set("serName", "a\nb")), field: "serName"},
		{name: "serName DEL", body: patch(eg, set("serName", "a\x7fb")), field: "serName"},
		{name: "serName C1 control", body: patch(eg, set("serName", "a\u0085b")), field: "serName"},
		{name: "serName escaped backspace", body: strings.Replace(eg, "ExampleService10", `a\bb`, 1), field: "serName"},
		{name: "version with NUL", body: patch(eg, set("version", "1\x00")), field: "version"},
		{name: "version with LF", body: patch(eg, set("version", "1\n2")), field: "version"},
		{name: "version with tab", body: patch(eg, set("version", "1\t2")), field: "version"},
		{name: "host with NUL", body: patch(eg, set("transportInfo.endpoint.addresses.0.host", "10.0.0.1\x00evil")), field: "transportInfo.endpoint.addresses[0].host"},
		{name: "host with CR LF", body: patch(eg, set("transportInfo.endpoint.addresses.0.host", "10.0.0.1\r\nX: y")), field: "transportInfo.endpoint.addresses[0].host"},
		{name: "host invalid UTF-8", body: strings.Replace(eg, `"host":"10.0.0.1"`, "\"host\":\"10.0.0.\xfe\"", 1), field: "transportInfo.endpoint.addresses[0].host"},
		{name: "uri with LF", body: patch(eg, set("transportInfo.endpoint", raw(`{"uris":["http://a/\n"]}`))), field: "transportInfo.endpoint.uris[0]"},
		{name: "uri too long", body: patch(eg, set("transportInfo.endpoint", raw(`{"uris":["`+strings.Repeat("u", mec.MaxURILen+1)+`"]}`))), field: "transportInfo.endpoint.uris[0]"},
		{name: "fqdn with NUL", body: patch(eg, set("transportInfo.endpoint", raw(`{"fqdn":["a\u0000b"]}`))), field: "transportInfo.endpoint.fqdn[0]"},
		{name: "category name with control", body: patch(eg, set("serCategory.name", "R\x01NI")), field: "serCategory.name"},
		{name: "description with LF is free text", body: patch(eg, set("transportInfo.description", "line one\nline two\ttabbed"))},
		{name: "description with NUL", body: patch(eg, set("transportInfo.description", "a\x00")), field: "transportInfo.description"},
		{name: "description invalid UTF-8", body: strings.Replace(eg, "REST API", "REST \xc0\xaf API", 1), field: "transportInfo.description"},
		{name: "implSpecificInfo lone surrogate", body: strings.Replace(eg, `"implSpecificInfo":{}`, `"implSpecificInfo":{"k":"\udfff"}`, 1), field: "transportInfo.implSpecificInfo.k"},
		{name: "member name invalid UTF-8", body: strings.Replace(eg, `"implSpecificInfo":{}`, "\"implSpecificInfo\":{\"k\xff\":1}", 1), field: "transportInfo.implSpecificInfo.k\ufffd"},
		{name: "null uri", body: patch(eg, set("transportInfo.endpoint", raw(`{"uris":["x",null]}`))), field: "transportInfo.endpoint.uris[1]"},
		{name: "null address", body: patch(eg, set("transportInfo.endpoint.addresses", raw(`[null]`))), field: "transportInfo.endpoint.addresses[0]"},
		{name: "null grant type", body: patch(eg, set("transportInfo.security.oAuth2Info.grantTypes", raw(`[null]`))), field: "transportInfo.security.oAuth2Info.grantTypes[0]"},
		{name: "null inside implSpecificInfo's array", body: patch(eg, set("transportInfo.implSpecificInfo", raw(`{"a":[1,[2,null]]}`))), field: "transportInfo.implSpecificInfo.a[1][1]"},
		{name: "serCategory without id", body: patch(eg, set("serCategory.id", "")), field: "serCategory.id"},
		{name: "serCategory without name", body: patch(eg, set("serCategory.name", "")), field: "serCategory.name"},
		{name: "serCategory id with slash", body: patch(eg, set("serCategory.id", "a/b")), field: "serCategory.id"},
		{name: "serCategory id with comma", body: patch(eg, set("serCategory.id", "a,b")), field: "serCategory.id"},
		{name: "serCategory id with trailing space", body: patch(eg, set("serCategory.id", "a ")), field: "serCategory.id"},
		{name: "serCategory href too long", body: patch(eg, set("serCategory.href", long)), field: "serCategory.href"},
		{name: "no transport at all", body: patch(eg, del("transportInfo"), set("transportId", "")), field: "transportInfo"},
		{name: "empty transportInfo without transportId", body: patch(eg, set("transportInfo", raw(emptyTransportInfo)), set("transportId", "")), field: "transportInfo"},
		{name: "unknown transportId", body: patch(eg, del("transportInfo"), set("transportId", "nope")), field: "transportId"},
		{name: "transportId without a resolver", body: patch(eg, del("transportInfo"), set("transportId", platformID)), noResolver: true, field: "transportId"},
		{name: "transportInfo.id missing", body: patch(eg, set("transportInfo.id", "")), field: "transportInfo.id"},
		{name: "transportInfo.name missing", body: patch(eg, del("transportInfo.name")), field: "transportInfo.name"},
		{name: "transportInfo.protocol missing", body: patch(eg, set("transportInfo.protocol", "")), field: "transportInfo.protocol"},
		{name: "transportInfo.version missing", body: patch(eg, set("transportInfo.version", "")), field: "transportInfo.version"},
		{name: "transportInfo.description too long", body: patch(eg, set("transportInfo.description", strings.Repeat("d", 4*mec.MaxNameLen+1))), field: "transportInfo.description"},
		{name: "transport type missing", body: patch(eg, set("transportInfo.type", "")), field: "transportInfo.type"},
		{name: "transport type unknown", body: patch(eg, set("transportInfo.type", "HTTP")), field: "transportInfo.type"},
		{name: "endpoint missing", body: patch(eg, del("transportInfo.endpoint")), field: "transportInfo.endpoint"},
		{name: "endpoint null", body: patch(eg, set("transportInfo.endpoint", nil)), field: "transportInfo.endpoint"},
		{name: "endpoint empty", body: patch(eg, set("transportInfo.endpoint", raw(`{}`))), field: "transportInfo.endpoint"},
		{name: "endpoint of nulls", body: patch(eg, set("transportInfo.endpoint", raw(`{"uris":null,"addresses":null,"alternative":null}`))), field: "transportInfo.endpoint"},
		{name: "endpoint with empty alternative", body: patch(eg, set("transportInfo.endpoint", raw(`{"alternative":{}}`))), field: "transportInfo.endpoint"},
		{name: "endpoint empty uri", body: patch(eg, set("transportInfo.endpoint", raw(`{"uris":[""]}`))), field: "transportInfo.endpoint.uris[0]"},
		{name: "endpoint empty fqdn", body: patch(eg, set("transportInfo.endpoint", raw(`{"fqdn":["a"," "]}`))), field: "transportInfo.endpoint.fqdn[1]"},
		{name: "address without host", body: patch(eg, set("transportInfo.endpoint.addresses.0.host", "")), field: "transportInfo.endpoint.addresses[0].host"},
		{name: "address port 0", body: patch(eg, set("transportInfo.endpoint.addresses.0.port", 0)), field: "transportInfo.endpoint.addresses[0].port"},
		{name: "address port too big", body: patch(eg, set("transportInfo.endpoint.addresses.0.port", 65536)), field: "transportInfo.endpoint.addresses[0].port"},
		{name: "second address bad", body: patch(eg, set("transportInfo.endpoint.addresses", raw(`[{"host":"a","port":1},{"host":"b","port":0}]`))), field: "transportInfo.endpoint.addresses[1].port"},
		{name: "grant types empty beside a token endpoint", body: patch(eg, set("transportInfo.security.oAuth2Info.grantTypes", raw(`[]`))), field: "transportInfo.security.oAuth2Info.grantTypes"},
		{name: "too many grant types", body: patch(eg, set("transportInfo.security.oAuth2Info.grantTypes", append(mec.GrantTypes, "OAUTH2_CLIENT_CREDENTIALS"))), field: "transportInfo.security.oAuth2Info.grantTypes"},
		{name: "grant type unknown", body: patch(eg, set("transportInfo.security.oAuth2Info.grantTypes", []string{"OAUTH2_CLIENT_CREDENTIALS", "PASSWORD"})), field: "transportInfo.security.oAuth2Info.grantTypes[1]"},
		{name: "token endpoint missing", body: patch(eg, set("transportInfo.security.oAuth2Info.tokenEndpoint", "")), field: "transportInfo.security.oAuth2Info.tokenEndpoint"},

		// Refused: JSON type mismatches name the member.
		{name: "port is a string", body: patch(eg, set("transportInfo.endpoint.addresses.0.port", "x")), field: "transportInfo.endpoint.addresses.port"},
		{name: "port is negative", body: patch(eg, set("transportInfo.endpoint.addresses.0.port", -1)), field: "transportInfo.endpoint.addresses.port"},
		{name: "state is a number", body: patch(eg, set("state", 5)), field: "state"},
		{name: "livenessInterval is a string", body: patch(eg, set("livenessInterval", "10")), field: "livenessInterval"},
		{name: "livenessInterval is fractional", body: patch(eg, set("livenessInterval", 1.5)), field: "livenessInterval"},
		{name: "consumedLocalOnly is a string", body: patch(eg, set("consumedLocalOnly", "no")), field: "consumedLocalOnly"},
		{name: "serCategory is a string", body: patch(eg, set("serCategory", "RNI")), field: "serCategory"},
		{name: "grantTypes is a string", body: patch(eg, set("transportInfo.security.oAuth2Info.grantTypes", "OAUTH2_CLIENT_CREDENTIALS")), field: "transportInfo.security.oAuth2Info.grantTypes"},
		{name: "body is an array", body: `[` + eg + `]`, field: "body"},
		{name: "body is a string", body: `"ServiceInfo"`, field: "body"},
		{name: "wrapper around a number", body: `{"ServiceInfo":5}`, field: "body"},

		// Refused: not one JSON object.
		{name: "empty body", body: "", field: "body"},
		{name: "blank body", body: " \n", field: "body"},
		{name: "null body", body: "null", field: "body"},
		{name: "null in the wrapper", body: `{"ServiceInfo":null}`, field: "body"},
		{name: "malformed JSON", body: `{"serName":`, field: "body"},
		{name: "not JSON", body: `serName=a`, field: "body"},
		{name: "trailing garbage", body: eg + ` x`, field: "body"},
		{name: "trailing second object", body: eg + `{}`, field: "body"},
		{name: "trailing brace", body: eg + `}`, field: "body"},
		{name: "trailing bracket", body: eg + `]`, field: "body"},
		{name: "wrapper with trailing brace", body: `{"ServiceInfo":` + eg + `}}`, field: "body"},
		{name: "wrapper beside another member is not unwrapped", body: `{"ServiceInfo":` + eg + `,"x":1}`, field: "serName"},
	}
}

func ptr[T any](v T) *T { return &v }

func js(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestDecodeServiceInfo(t *testing.T) {
	for _, tc := range decodeCases() {
		t.Run(tc.name, func(t *testing.T) {
			resolve := platformTransport
			if tc.noResolver {
				resolve = nil
			}
			si, err := mec.DecodeServiceInfo([]byte(tc.body), resolve)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v\nbody %s", err, tc.body)
				}
				if si.Links != nil {
					t.Errorf("_links kept in the decoded value: %s", js(si.Links))
				}
				if si.TransportInfo == nil || si.TransportInfo.Security == nil {
					t.Errorf("accepted without a transport and its security: %s", js(si))
				}
				if tc.check != nil {
					tc.check(t, si)
				}
				return
			}
			var fe *mec.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v (%T), want a *mec.FieldError for %q", err, err, tc.field)
			}
			if fe.Field != tc.field {
				t.Errorf("Field = %q, want %q (%v)", fe.Field, tc.field, fe)
			}
			if fe.Reason == "" || !strings.HasPrefix(fe.Error(), fe.Field+": ") {
				t.Errorf("Error() = %q: want the field and a reason", fe.Error())
			}
		})
	}
}

// TestDecodeServiceInfoTypeErrorReason checks that a type mismatch says
// what was expected, in words a client can act on.
func TestDecodeServiceInfoTypeErrorReason(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"string for a number", patch(edgeGalleryPayload, set("transportInfo.endpoint.addresses.0.port", "x")), "must be a number in range, not a JSON string"},
		{"number for a string", patch(edgeGalleryPayload, set("state", 5)), "must be a string, not a JSON number"},
		{"string for a boolean", patch(edgeGalleryPayload, set("isLocal", "yes")), "must be a boolean, not a JSON string"},
		{"string for an object", patch(edgeGalleryPayload, set("transportInfo", "REST")), "must be an object, not a JSON string"},
		{"string for an array", patch(edgeGalleryPayload, set("transportInfo.endpoint.uris", "x")), "must be an array, not a JSON string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mec.DecodeServiceInfo([]byte(tc.body), nil)
			var fe *mec.FieldError
			if !errors.As(err, &fe) || fe.Reason != tc.want {
				t.Fatalf("err = %v, want reason %q", err, tc.want)
			}
		})
	}
}

// TestDecodeBytes covers the generic reader the other bodies go through.
func TestDecodeBytes(t *testing.T) {
	type update struct {
		State string `json:"state"`
	}
	tests := []struct {
		name, body, wrapper string
		want                update
		field               string
	}{
		{name: "plain", body: `{"state":"ACTIVE"}`, want: update{"ACTIVE"}},
		{name: "wrapped", body: `{"ServiceLivenessUpdate":{"state":"ACTIVE"}}`, wrapper: "ServiceLivenessUpdate", want: update{"ACTIVE"}},
		{name: "wrapper not asked for", body: `{"ServiceLivenessUpdate":{"state":"ACTIVE"}}`, want: update{}},
		{name: "empty", body: ``, field: "body"},
		{name: "type mismatch", body: `{"state":true}`, field: "state"},
		{name: "trailing brace", body: `{"state":"ACTIVE"}}`, field: "body"},
		{name: "trailing value", body: `{"state":"ACTIVE"} 1`, field: "body"},
		{name: "syntax", body: `{"state" "ACTIVE"}`, field: "body"},
		{name: "null", body: `null`, field: "body"},
		{name: "invalid UTF-8", body: "{\"state\":\"ACT\xffIVE\"}", field: "state"},
		{name: "invalid UTF-8 in an unknown member", body: "{\"state\":\"ACTIVE\",\"x\":{\"y\":[\"\xff\"]}}", field: "x.y[0]"},
		{name: "control character in an unknown member", body: `{"state":"ACTIVE","x":"\u001b[2J"}`, field: "x"},
		{name: "null item in an unknown member", body: `{"state":"ACTIVE","x":[null]}`, field: "x[0]"},
		{name: "null item in a top-level array", body: `[null]`, field: "body"},
		{name: "null member is absent", body: `{"state":null}`, want: update{}},
		{name: "escapes kept", body: `{"state":"A\"\\\/\u00e9\n"}`, want: update{"A\"\\/é\n"}},
		{name: "string body", body: `"\u0000"`, field: "body"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got update
			err := mec.DecodeBytes([]byte(tc.body), tc.wrapper, &got)
			if tc.field != "" {
				var fe *mec.FieldError
				if !errors.As(err, &fe) || fe.Field != tc.field {
					t.Fatalf("err = %v, want a FieldError for %q", err, tc.field)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// FuzzDecodeServiceInfo: DecodeServiceInfo never panics, refuses only with
// a *FieldError that names a field, and what it accepts marshals to a body
// it accepts again with the same name, state and serializer.
func FuzzDecodeServiceInfo(f *testing.F) {
	for _, tc := range decodeCases() {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		si, err := mec.DecodeServiceInfo(body, platformTransport)
		if err != nil {
			var fe *mec.FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("err = %v (%T): want a *mec.FieldError naming a field", err, err)
			}
			return
		}
		again, err := json.Marshal(si)
		if err != nil {
			t.Fatalf("marshal accepted value: %v", err)
		}
		si2, err := mec.DecodeServiceInfo(again, platformTransport)
		if err != nil {
			t.Fatalf("re-marshalled value refused: %v\nfirst %q\nagain %s", err, body, again)
		}
		if si2.SerName != si.SerName || si2.State != si.State || si2.Serializer != si.Serializer {
			t.Fatalf("round trip changed the service: %q/%q/%q, then %q/%q/%q",
				si.SerName, si.State, si.Serializer, si2.SerName, si2.State, si2.Serializer)
		}
	})
}
