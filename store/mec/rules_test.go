package mec_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/store/mec"
)

func TestDecodeTrafficRuleAccepts(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{name: "2.1.1 example, dstInterface an object",
			in:   `{"trafficRuleId":"TrafficRule123","serName":"ExampleService","filterType":"FLOW","priority":1,"trafficFilter":[{"srcAddress":["192.168.2.0/24","192.168.3.0/24"],"dstAddress":["192.127.4.100/32"],"dstPort":["80"]}],"action":"FORWARD_DECAPSULATED","dstInterface":{"interfaceType":"IP","dstIpAddress":"20.1.1.1"},"state":"ACTIVE"}`,
			want: `{"trafficRuleId":"TrafficRule123","serName":"ExampleService","filterType":"FLOW","priority":1,"trafficFilter":[{"srcAddress":["192.168.2.0/24","192.168.3.0/24"],"dstAddress":["192.127.4.100/32"],"dstPort":["80"]}],"action":"FORWARD_DECAPSULATED","dstInterface":{"interfaceType":"IP","dstIpAddress":"20.1.1.1"},"state":"ACTIVE"}`},
		{name: "duplicate to two interfaces, an array; members in canonical order",
			in:   `{"state":"INACTIVE","dstInterface":[{"interfaceType":"MAC","dstMacAddress":"02-00-00-00-00-01","srcMacAddress":"02:00:00:00:00:02"},{"tunnelInfo":{"tunnelType":"GTP_U","tunnelDstAddress":"2001:db8::1"},"interfaceType":"TUNNEL"}],"action":"DUPLICATE_ENCAPSULATED","trafficFilter":[{"srcAddress":["10.0.0.1-10.0.0.9","2001:db8::/32"],"srcPort":["1000-2000","0"],"qCI":1,"dSCP":63,"tC":255,"tag":["t"],"token":["k"]}],"priority":255,"filterType":"PACKET","trafficRuleId":"r"}`,
			want: `{"trafficRuleId":"r","filterType":"PACKET","priority":255,"trafficFilter":[{"srcAddress":["10.0.0.1-10.0.0.9","2001:db8::/32"],"srcPort":["1000-2000","0"],"token":["k"],"tag":["t"],"qCI":1,"dSCP":63,"tC":255}],"action":"DUPLICATE_ENCAPSULATED","dstInterface":[{"interfaceType":"MAC","srcMacAddress":"02:00:00:00:00:02","dstMacAddress":"02-00-00-00-00-01"},{"interfaceType":"TUNNEL","tunnelInfo":{"tunnelType":"GTP_U","tunnelDstAddress":"2001:db8::1"}}],"state":"INACTIVE"}`},
		{name: "one forward interface in an array stays an array",
			in:   `{"trafficRuleId":"r","filterType":"FLOW","priority":0,"trafficFilter":[{}],"action":"FORWARD_ENCAPSULATED","dstInterface":[{"interfaceType":"IP","dstIpAddress":"10.1.1.1"}],"state":"ACTIVE"}`,
			want: `{"trafficRuleId":"r","filterType":"FLOW","priority":0,"trafficFilter":[{}],"action":"FORWARD_ENCAPSULATED","dstInterface":[{"interfaceType":"IP","dstIpAddress":"10.1.1.1"}],"state":"ACTIVE"}`},
		{name: "DROP with an empty dstInterface array (EdgeGallery)",
			in:   `{"trafficRuleId":"r","filterType":"FLOW","priority":0,"trafficFilter":[{}],"action":"DROP","dstInterface":[],"state":"ACTIVE"}`,
			want: `{"trafficRuleId":"r","filterType":"FLOW","priority":0,"trafficFilter":[{}],"action":"DROP","state":"ACTIVE"}`},
		{name: "DROP with an empty dstInterface object",
			in:   `{"trafficRuleId":"r","filterType":"FLOW","priority":0,"trafficFilter":[{}],"action":"DROP","dstInterface":{},"state":"ACTIVE"}`,
			want: `{"trafficRuleId":"r","filterType":"FLOW","priority":0,"trafficFilter":[{}],"action":"DROP","state":"ACTIVE"}`},
		{name: "PASSTHROUGH without dstInterface, unknown members dropped",
			in:   `{"trafficRuleId":"r","filterType":"FLOW","priority":3,"trafficFilter":[{"protocol":["TCP"]}],"action":"PASSTHROUGH","dstInterface":null,"state":"ACTIVE","extra":1}`,
			want: `{"trafficRuleId":"r","filterType":"FLOW","priority":3,"trafficFilter":[{"protocol":["TCP"]}],"action":"PASSTHROUGH","state":"ACTIVE"}`},
		{name: "v3 wrapper",
			in:   `{"TrafficRule":{"trafficRuleId":"r","filterType":"FLOW","priority":3,"trafficFilter":[{}],"action":"DROP","state":"ACTIVE"}}`,
			want: `{"trafficRuleId":"r","filterType":"FLOW","priority":3,"trafficFilter":[{}],"action":"DROP","state":"ACTIVE"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, got, err := mec.DecodeTrafficRule([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("canonical = %s\nwant        %s", got, tc.want)
			}
		})
	}
}

func TestDecodeDNSRuleAccepts(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{name: "2.1.1 example", in: `{"dnsRuleId":"DnsRule1","domainName":"www.example.com","ipAddressType":"IP_V4","ipAddress":"146.241.7.3","ttl":300,"state":"ACTIVE"}`,
			want: `{"dnsRuleId":"DnsRule1","domainName":"www.example.com","ipAddressType":"IP_V4","ipAddress":"146.241.7.3","ttl":300,"state":"ACTIVE"}`},
		{name: "no ttl, IPv6, trailing dot", in: `{"state":"INACTIVE","ipAddress":"2001:DB8::1","ipAddressType":"IP_V6","domainName":"svc.mec.local.","dnsRuleId":"d"}`,
			want: `{"dnsRuleId":"d","domainName":"svc.mec.local.","ipAddressType":"IP_V6","ipAddress":"2001:DB8::1","state":"INACTIVE"}`},
		{name: "ttl 0, wildcard, wrapper", in: `{"DnsRule":{"dnsRuleId":"d","domainName":"*.apps.example","ipAddressType":"IP_V4","ipAddress":"10.0.0.1","ttl":0,"state":"ACTIVE"}}`,
			want: `{"dnsRuleId":"d","domainName":"*.apps.example","ipAddressType":"IP_V4","ipAddress":"10.0.0.1","ttl":0,"state":"ACTIVE"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, got, err := mec.DecodeDNSRule([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("canonical = %s\nwant        %s", got, tc.want)
			}
		})
	}
}

// The canonical form is a fixed point: decoding it again gives it back.
func FuzzDecodeTrafficRule(f *testing.F) {
	f.Add([]byte(`{"trafficRuleId":"r","filterType":"FLOW","priority":3,"trafficFilter":[{"srcAddress":["10.0.0.0/8"],"dstPort":["1-2"]}],"action":"DUPLICATE_DECAPSULATED","dstInterface":[{"interfaceType":"IP","dstIpAddress":"10.0.0.1"},{"interfaceType":"IP","dstIpAddress":"10.0.0.2"}],"state":"ACTIVE"}`))
	f.Add([]byte(`{"TrafficRule":{"trafficRuleId":"r","filterType":"PACKET","priority":0,"trafficFilter":[{}],"action":"FORWARD_DECAPSULATED","dstInterface":{"interfaceType":"TUNNEL","tunnelInfo":{"tunnelType":"GRE"}},"state":"INACTIVE"}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		_, canon, err := mec.DecodeTrafficRule(in)
		if err != nil {
			var fe *mec.FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("error %v is not a *mec.FieldError naming a field", err)
			}
			return
		}
		_, again, err := mec.DecodeTrafficRule(canon)
		if err != nil || !bytes.Equal(again, canon) {
			t.Fatalf("canonical %s decodes to %s, %v", canon, again, err)
		}
	})
}

func FuzzDecodeDNSRule(f *testing.F) {
	f.Add([]byte(`{"dnsRuleId":"d","domainName":"www.example.com","ipAddressType":"IP_V6","ipAddress":"::ffff:10.0.0.1","ttl":5,"state":"ACTIVE"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		_, canon, err := mec.DecodeDNSRule(in)
		if err != nil {
			var fe *mec.FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("error %v is not a *mec.FieldError naming a field", err)
			}
			return
		}
		_, again, err := mec.DecodeDNSRule(canon)
		if err != nil || !bytes.Equal(again, canon) {
			t.Fatalf("canonical %s decodes to %s, %v", canon, again, err)
		}
	})
}

// TestValidateNestedRules: in an Mm5 configuration errors name the path
// under the rule's own, and a missing state defaults to ACTIVE.
func TestValidateNestedRules(t *testing.T) {
	const tr = `{"trafficRuleId":"t1","filterType":"FLOW","priority":1,"trafficFilter":[{"srcAddress":["10.0.0.0/24"],"dstPort":["80","8000-8080"],"protocol":["TCP"]}],"action":"FORWARD_DECAPSULATED","dstInterface":{"interfaceType":"IP","dstIpAddress":"10.1.1.1"}}`
	const dr = `{"dnsRuleId":"d1","domainName":"www.example.com","ipAddressType":"IP_V4","ipAddress":"192.0.2.10","ttl":30}`
	tests := []struct {
		name, kind, from, to, field string
	}{
		{"defaults state", "traffic", "", "", ""},
		{"DNS defaults state", "dns", "", "", ""},
		{"port", "traffic", `"8000-8080"`, `"80000"`, "appTrafficRule[3].trafficFilter[0].dstPort[1]"},
		{"signed port", "traffic", `"80",`, `"+80",`, "appTrafficRule[3].trafficFilter[0].dstPort[0]"},
		{"backwards port range", "traffic", `"8000-8080"`, `"8080-8000"`, "appTrafficRule[3].trafficFilter[0].dstPort[1]"},
		{"long protocol", "traffic", `"TCP"`, `"` + strings.Repeat("p", 33) + `"`, "appTrafficRule[3].trafficFilter[0].protocol[0]"},
		{"too many entries", "traffic", `"TCP"`, strings.Repeat(`"TCP",`, 64) + `"TCP"`, "appTrafficRule[3].trafficFilter[0].protocol"},
		{"interface object", "traffic", `"10.1.1.1"`, `"10.1.1"`, "appTrafficRule[3].dstInterface.dstIpAddress"},
		{"interface array", "traffic", `{"interfaceType":"IP","dstIpAddress":"10.1.1.1"}`, `[{"interfaceType":"IP"}]`, "appTrafficRule[3].dstInterface[0].dstIpAddress"},
		{"priority missing", "traffic", `"priority":1,`, ``, "appTrafficRule[3].priority"},
		{"colon in trafficRuleId", "traffic", `"t1"`, `"a:t1"`, "appTrafficRule[3].trafficRuleId"},
		{"slash in trafficRuleId", "traffic", `"t1"`, `"a/t1"`, "appTrafficRule[3].trafficRuleId"},
		{"NUL in dnsRuleId", "dns", `"d1"`, `"d\u00001"`, "appDNSRule[3].dnsRuleId"},
		{"hash in dnsRuleId", "dns", `"d1"`, `"d#1"`, "appDNSRule[3].dnsRuleId"},
		{"mapped address for IP_V4", "dns", `"192.0.2.10"`, `"::ffff:192.0.2.10"`, "appDNSRule[3].ipAddress"},
		{"wildcard inside a name", "dns", `"www.example.com"`, `"www.*.example.com"`, "appDNSRule[3].domainName"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			var state string
			if tc.kind == "traffic" {
				var r mec.TrafficRule
				if err := json.Unmarshal([]byte(strings.Replace(tr, tc.from, tc.to, 1)), &r); err != nil {
					t.Fatal(err)
				}
				err = mec.ValidateTrafficRule(&r, "appTrafficRule[3]", true)
				state = r.State
			} else {
				var r mec.DNSRule
				if err := json.Unmarshal([]byte(strings.Replace(dr, tc.from, tc.to, 1)), &r); err != nil {
					t.Fatal(err)
				}
				err = mec.ValidateDNSRule(&r, "appDNSRule[3]", true)
				state = r.State
			}
			if tc.field == "" {
				if err != nil || state != "ACTIVE" {
					t.Fatalf("err %v, state %q; want nil, ACTIVE", err, state)
				}
				return
			}
			var fe *mec.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("err = %v, want a *mec.FieldError for %s", err, tc.field)
			}
		})
	}
	// A top-level body has no default state.
	if _, _, err := mec.DecodeDNSRule([]byte(dr)); err == nil || !strings.HasPrefix(err.Error(), "state: ") {
		t.Errorf("DecodeDNSRule without state: %v, want a state error", err)
	}
}

// TestDecodeRulesRefuseAlteredText: a rule body is stored as sent or not at
// all: what encoding/json would change (invalid UTF-8, [null] items) or
// keep (control characters) is refused, naming the member.
func TestDecodeRulesRefuseAlteredText(t *testing.T) {
	const tr = `{"trafficRuleId":"t1","serName":"svc","filterType":"FLOW","priority":1,"trafficFilter":[{"srcAddress":["10.0.0.0/24"],"protocol":["TCP"]}],"action":"DROP","state":"ACTIVE"}`
	const dr = `{"dnsRuleId":"d1","domainName":"www.example.com","ipAddressType":"IP_V4","ipAddress":"192.0.2.10","ttl":30,"state":"ACTIVE"}`
	tests := []struct {
		name, kind, from, to, field string
	}{
		{"invalid UTF-8 in trafficRuleId", "traffic", `"t1"`, "\"t\xff1\"", "trafficRuleId"},
		{"CR LF in serName", "traffic", `"svc"`, `"s\r\nvc"`, "serName"},
		{"NUL in serName", "traffic", `"svc"`, `"s\u0000vc"`, "serName"},
		{"null filter", "traffic", `[{"srcAddress":["10.0.0.0/24"],"protocol":["TCP"]}]`, `[null]`, "trafficFilter[0]"},
		{"null protocol", "traffic", `["TCP"]`, `["TCP",null]`, "trafficFilter[0].protocol[1]"},
		{"tab in a protocol", "traffic", `"TCP"`, `"T\tCP"`, "trafficFilter[0].protocol[0]"},
		{"lone surrogate in dnsRuleId", "dns", `"d1"`, `"d\udbff"`, "dnsRuleId"},
		{"ttl over the bound", "dns", `"ttl":30`, `"ttl":2147483648`, "ttl"},
		{"null body", "dns", dr, `null`, "body"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.kind == "traffic" {
				_, _, err = mec.DecodeTrafficRule([]byte(strings.Replace(tr, tc.from, tc.to, 1)))
			} else {
				_, _, err = mec.DecodeDNSRule([]byte(strings.Replace(dr, tc.from, tc.to, 1)))
			}
			var fe *mec.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("err = %v, want a *mec.FieldError for %s", err, tc.field)
			}
		})
	}
}
