package mec

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// checkText walks raw, one syntactically valid JSON value, and refuses what
// encoding/json would accept but silently change or keep, so that a body
// is stored as sent or not at all:
//
//   - a string (member value or member name) that is not valid UTF-8,
//     including an escaped lone surrogate ("\ud800"): encoding/json would
//     replace it with U+FFFD;
//   - a control character (U+0000–U+001F, U+007F, U+0080–U+009F) in a
//     string, escaped or not, except tab, line feed and carriage return
//     (free text may hold those; names refuse them too, see bounded);
//   - null as an array item: it would become the item type's zero value
//     ({} or ""). No kmep body has an array whose items may be null.
//
// The *FieldError names the member by its JSON path, as the validators do
// ("transportInfo.endpoint.uris[0]"); "body" for the value itself.
func checkText(raw []byte) error {
	type frame struct {
		array bool
		index int    // array: the current item
		key   string // object: the current member
	}
	var stack []frame
	expectKey := false
	path := func() string {
		p := ""
		for _, f := range stack {
			if f.array {
				p += "[" + strconv.Itoa(f.index) + "]"
			} else {
				p = join(p, f.key)
			}
		}
		if p == "" {
			return "body"
		}
		return p
	}
	for i := 0; i < len(raw); {
		switch c := raw[i]; c {
		case '{':
			stack = append(stack, frame{})
			expectKey = true
			i++
		case '[':
			stack = append(stack, frame{array: true})
			i++
		case '}', ']':
			stack = stack[:len(stack)-1]
			i++
		case ',':
			if top := &stack[len(stack)-1]; top.array {
				top.index++
			} else {
				expectKey = true
			}
			i++
		case '"':
			s, n, reason := readString(raw[i:])
			if expectKey {
				top := &stack[len(stack)-1]
				top.key = s
				expectKey = false
				if reason != "" {
					return fieldErr(path(), "member name %s", reason)
				}
			} else if reason != "" {
				return fieldErr(path(), "%s", reason)
			}
			i += n
		case 'n':
			if len(stack) > 0 && stack[len(stack)-1].array {
				return fieldErr(path(), "must not be null")
			}
			i += len("null")
		default: // white space, ':', numbers, true, false
			i++
		}
	}
	return nil
}

// readString reads the JSON string literal at the start of b (which is
// valid JSON). It returns the string (invalid parts replaced, for naming
// a member), the length of the literal, and why the string is refused ("" if
// it is not).
func readString(b []byte) (s string, n int, reason string) {
	var out strings.Builder
	refuse := func(r string) {
		if reason == "" {
			reason = r
		}
	}
	check := func(r rune) {
		if unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r' {
			refuse("must not contain control characters (" + strconv.QuoteRune(r) + ")")
		}
		out.WriteRune(r)
	}
	i := 1
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return out.String(), i + 1, reason
		case c == '\\':
			if i+1 >= len(b) {
				return out.String(), len(b), reason
			}
			e := b[i+1]
			i += 2
			switch e {
			case 'b':
				check('\b')
			case 'f':
				check('\f')
			case 'n':
				check('\n')
			case 'r':
				check('\r')
			case 't':
				check('\t')
			case 'u':
				r := hex4(b[i:])
				i += 4
				if utf16IsHigh(r) && i+6 <= len(b) && b[i] == '\\' && b[i+1] == 'u' {
					if lo := hex4(b[i+2:]); utf16IsLow(lo) {
						check(0x10000 + (r-0xd800)<<10 + (lo - 0xdc00))
						i += 6
						continue
					}
				}
				if utf16IsHigh(r) || utf16IsLow(r) {
					refuse("is not valid UTF-8 (an unpaired surrogate \\u" + strconv.FormatInt(int64(r), 16) + ")")
					out.WriteRune(utf8.RuneError)
					continue
				}
				check(r)
			default: // '"', '\\', '/'
				out.WriteByte(e)
			}
		case c < utf8.RuneSelf:
			check(rune(c))
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				refuse("is not valid UTF-8")
				out.WriteRune(utf8.RuneError)
			} else {
				check(r)
			}
			i += size
		}
	}
	return out.String(), len(b), reason
}

func hex4(b []byte) rune {
	if len(b) < 4 {
		return utf8.RuneError
	}
	n, err := strconv.ParseUint(string(b[:4]), 16, 16)
	if err != nil {
		return utf8.RuneError
	}
	return rune(n)
}

func utf16IsHigh(r rune) bool { return 0xd800 <= r && r < 0xdc00 }
func utf16IsLow(r rune) bool  { return 0xdc00 <= r && r < 0xe000 }

// hasControl reports whether s holds a control character (white space
// controls included).
func hasControl(s string) bool { return strings.ContainsFunc(s, unicode.IsControl) }
