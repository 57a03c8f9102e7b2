package aksk

import (
	"fmt"
	"time"
)

// DateHeader is the header that carries the signing time. Its lowercase form,
// "x-sdk-date", is the name that must appear among the signed headers.
const DateHeader = "X-Sdk-Date"

// DateFormat is the time layout of DateHeader, always in UTC
// (e.g. "20260623T101500Z").
const DateFormat = "20060102T150405Z"

// dateHeaderLower is DateHeader as it appears in SignedHeaders.
const dateHeaderLower = "x-sdk-date"

// ParseDate parses an X-Sdk-Date value. Errors wrap ErrBadDate.
func ParseDate(v string) (time.Time, error) {
	t, err := time.Parse(DateFormat, v)
	if err != nil {
		// The parse error quotes the input; the layout is all the client needs.
		return time.Time{}, fmt.Errorf("%w: want layout %s", ErrBadDate, DateFormat)
	}
	return t, nil
}

// CheckSkew returns an error wrapping ErrClockSkew when date is more than
// window before or after now. A zero window accepts only date == now.
func CheckSkew(date, now time.Time, window time.Duration) error {
	d := now.Sub(date)
	if d > window || d < -window {
		return fmt.Errorf("%w: request date is %s away from server time, window is %s", ErrClockSkew, d.Round(time.Second), window)
	}
	return nil
}
