package rest_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/store/kit/problem"
	"github.com/kmep-io/kmep/store/kit/rest"
)

func TestIdempotencyKey(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []string
		want   string
		bad    bool
	}{
		{"absent", nil, "", false},
		{"bare", []string{"8e03978e-40d5-43e8-bc93-6894a57f9324"}, "8e03978e-40d5-43e8-bc93-6894a57f9324", false},
		{"structured string", []string{`"abc def"`}, "abc def", false},
		{"escapes", []string{`"a\"b\\c"`}, `a"b\c`, false},
		{"surrounding space", []string{"  k1 "}, "k1", false},
		{"longest", []string{strings.Repeat("k", rest.MaxIdempotencyKey)}, strings.Repeat("k", rest.MaxIdempotencyKey), false},
		{"too long", []string{strings.Repeat("k", rest.MaxIdempotencyKey+1)}, "", true},
		{"empty", []string{""}, "", true},
		{"empty string", []string{`""`}, "", true},
		{"control character", []string{"a\x01b"}, "", true},
		{"not ASCII", []string{"clé"}, "", true},
		{"two values", []string{"a", "b"}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", nil)
			for _, v := range tc.values {
				r.Header.Add("Idempotency-Key", v)
			}
			got, err := rest.IdempotencyKey(r)
			var pe *problem.Error
			switch {
			case tc.bad && (!errors.As(err, &pe) || pe.Status != http.StatusBadRequest || pe.Field != "Idempotency-Key"):
				t.Fatalf("IdempotencyKey = %q, %v; want a 400 naming Idempotency-Key", got, err)
			case !tc.bad && (err != nil || got != tc.want):
				t.Fatalf("IdempotencyKey = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestKeyedID(t *testing.T) {
	uuid8 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	a := rest.KeyedID("service\x00app-1", "k")
	if !uuid8.MatchString(a) {
		t.Fatalf("KeyedID = %q, not a version 8 UUID", a)
	}
	if b := rest.KeyedID("service\x00app-1", "k"); b != a {
		t.Errorf("KeyedID is not a function of its arguments: %q then %q", a, b)
	}
	for _, other := range [][2]string{{"service\x00app-2", "k"}, {"service\x00app-1", "k2"}, {"service\x00app-1k", ""}, {"subscription\x00app-1", "k"}} {
		if rest.KeyedID(other[0], other[1]) == a {
			t.Errorf("KeyedID(%q, %q) = KeyedID(service/app-1, k)", other[0], other[1])
		}
	}
}
