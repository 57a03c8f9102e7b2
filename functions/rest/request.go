package rest

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/kmep-io/kmep/functions/mec"
	"github.com/kmep-io/kmep/functions/problem"
)

// ReadBody reads r's body, at most limit bytes. A longer body is an
// *http.MaxBytesError (problem answers 413); any other failure to read it
// is a 400 naming the field "body".
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, problem.BadRequest("body", "could not read the request body")
	}
	return b, nil
}

// IfMatch returns the revision r's If-Match header asks for: 0 when there
// is none (or "*"), -1 when the header names no revision of ours and so can
// never match (the caller answers 412), else the revision of an ETag
// written by ETag, weak or strong.
func IfMatch(r *http.Request) int64 {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	if v == "" || v == "*" {
		return 0
	}
	v = strings.TrimPrefix(v, "W/")
	n, err := strconv.ParseInt(strings.Trim(v, `"`), 10, 64)
	if err != nil || n <= 0 {
		return -1
	}
	return n
}

// BadField turns a *mec.FieldError into a 400 naming its field; any other
// error (nil included) is returned as it is.
func BadField(err error) error {
	var fe *mec.FieldError
	if errors.As(err, &fe) {
		return problem.BadRequest(fe.Field, fe.Error())
	}
	return err
}
