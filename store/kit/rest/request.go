package rest

import (
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/kmep-io/kmep/store/kit/problem"
	"github.com/kmep-io/kmep/store/mec"
)

// ReadBody reads r's JSON body, at most limit bytes. A body whose
// Content-Type names another media type than application/json (see
// CheckJSON: parameters such as charset=utf-8 are fine) is a 415 naming the field
// "Content-Type", before anything is read; a body without a Content-Type
// is read as JSON (RFC 9110 lets a recipient examine such data, and the
// decoders refuse anything else). A longer body is an *http.MaxBytesError
// (problem answers 413); a body that does not arrive in time (the
// server's read deadline, see store/kit/server) is a 408 that closes the
// connection; any other failure to read it is a 400 naming the field
// "body".
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength != 0 {
		if err := CheckJSON(r); err != nil {
			return nil, err
		}
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(err, &mbe):
			return nil, err
		case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
			return nil, &problem.Error{Status: http.StatusRequestTimeout, Field: "body",
				Detail: "the request body did not arrive in time", Header: http.Header{"Connection": {"close"}}, Cause: err}
		}
		return nil, problem.BadRequest("body", "could not read the request body")
	}
	return b, nil
}

// CheckJSON returns nil when r's Content-Type is application/json (with
// any parameters, but a charset must be UTF-8, as RFC 8259 requires of
// JSON) or absent, else a 415 naming the field "Content-Type" with an
// Accept header that says what is.
func CheckJSON(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if strings.TrimSpace(ct) == "" {
		return nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	cs, hasCharset := params["charset"]
	if err == nil && mt == "application/json" && (!hasCharset || strings.EqualFold(cs, "utf-8")) {
		return nil
	}
	return &problem.Error{Status: http.StatusUnsupportedMediaType, Field: "Content-Type",
		Detail: "the request body must be application/json, not " + strconv.Quote(ct),
		Header: http.Header{"Accept": {"application/json"}}}
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
