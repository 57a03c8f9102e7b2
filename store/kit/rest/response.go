package rest

import (
	"net/http"
	"strconv"
)

// WriteJSON answers status with body as application/json.
func WriteJSON(w http.ResponseWriter, status int, body []byte) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err := w.Write(body)
	return err
}

// ETag is the strong entity tag of a stored revision, as IfMatch reads it.
func ETag(rev int64) string { return `"` + strconv.FormatInt(rev, 10) + `"` }

// Absolute is path as an absolute URL of r's origin, for a Location header:
// the scheme is r's, or X-Forwarded-Proto's when that is http or https.
func Absolute(r *http.Request, path string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		scheme = p
	}
	return scheme + "://" + r.Host + path
}
