package webhook

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/friendgate/friendgate/internal/text"
)

// The two callback bodies are read by a scanner written for their shapes rather than by
// encoding/json: reflection, its validity pre-scan of the whole body and a string
// allocation per field were most of a callback's CPU time (docs/benchmarks.md). It
// accepts and refuses what encoding/json does for these structs (FuzzDecodeMatchesStdlib
// checks it): keys match exactly or else case-insensitively, unknown keys are skipped
// after checking their values, null leaves a field as it is, invalid UTF-8 in a string
// becomes U+FFFD, nesting deeper than encoding/json's 10,000 levels is refused. The body
// is copied into one string and every unescaped value is a substring of it, so a request
// costs one allocation for all its fields. One difference: a key given twice replaces
// the earlier value whole, where encoding/json would merge two arrays of items.

// maxNestingDepth is encoding/json's bound on nested arrays and objects.
const maxNestingDepth = 10000

// jsonError is a body that is not JSON, or not the callback's shape; the offset lets an
// operator find the spot in a logged body.
type jsonError struct {
	offset int
	msg    string
}

func (e *jsonError) Error() string { return fmt.Sprintf("%s (at byte %d)", e.msg, e.offset) }

type bodyDecoder struct {
	s string
	i int
}

var (
	// In the order OpenIM sends them (see fieldSet.field): the add-friend callback's
	// fields, then the remark's, the import's and the blacklist's.
	openIMFields = newFieldSet("callbackCommand", "fromUserID", "toUserID", "reqMsg", "ex",
		"ownerUserID", "friendUserID", "remark", "friendUserIDs", "blackUserID", "HandleMsg")
	// In the order Tencent sends them; Requester_Account, which falls between the first
	// two, is not read.
	tencentFields         = newFieldSet("CallbackCommand", "From_Account", "FriendItem", "ResponseFriendItem", "AddType", "ForceAddFlags", "EventTime")
	tencentFriendFields   = newFieldSet("To_Account", "Remark", "GroupName", "AddSource", "AddWording")
	tencentResponseFields = newFieldSet("To_Account", "Remark", "TagName", "ResponseAction")
)

// fieldSet is the field names of one body shape, with a table from a key's length and
// first byte to the one name it can equal exactly: a key costs one comparison, not one
// per name.
type fieldSet struct {
	names  []string
	quoted []string // each name in quotes, as a body spells it
	slot   [64]int8 // 1 + index of the only name of that hash; 0: none; -1: several
}

func newFieldSet(names ...string) *fieldSet {
	f := &fieldSet{names: names}
	for i, n := range names {
		f.quoted = append(f.quoted, `"`+n+`"`)
		switch h := fieldHash(n); f.slot[h] {
		case 0:
			f.slot[h] = int8(i + 1)
		default:
			f.slot[h] = -1
		}
	}
	return f
}

func fieldHash(key string) int { return (len(key)*31 + int(key[0])) & 63 }

// index finds key among the names as encoding/json does: an exact match, else the first
// case-insensitive one; -1 when none.
func (f *fieldSet) index(key string) int {
	if key != "" {
		switch s := f.slot[fieldHash(key)]; {
		case s > 0:
			if f.names[s-1] == key {
				return int(s - 1)
			}
		case s < 0:
			for i, n := range f.names {
				if n == key {
					return i
				}
			}
		}
	}
	// Only a non-ASCII key can fold to a name of another length (K, the Kelvin sign, is
	// three bytes and folds to k).
	ascii := text.IsASCII(key)
	for i, n := range f.names {
		if (!ascii || len(n) == len(key)) && strings.EqualFold(n, key) {
			return i
		}
	}
	return -1
}

// decodeOpenIM reads an OpenIM friend callback into r, which must be reset, with d (the
// request's pooled decoder: the item decoders would otherwise move it to the heap). An
// import of more than limit friend IDs is refused (*tooLarge) without holding the excess.
func decodeOpenIM(d *bodyDecoder, body []byte, limit int, r *openIMRequest) error {
	return d.decodeBody(body, openIMFields, func(i int, key string) error {
		switch i {
		case 0:
			return d.str(&r.CallbackCommand, key)
		case 1:
			return d.str(&r.FromUserID, key)
		case 2:
			return d.str(&r.ToUserID, key)
		case 3:
			return d.str(&r.ReqMsg, key)
		case 4:
			return d.str(&r.Ex, key)
		case 5:
			return d.str(&r.OwnerUserID, key)
		case 6:
			return d.str(&r.FriendUserID, key)
		case 7:
			return d.str(&r.Remark, key)
		case 8:
			return decodeArray(d, &r.FriendUserIDs, key, limit, "friend IDs", decodeUserID)
		case 9:
			return d.str(&r.BlackUserID, key)
		case 10:
			return d.str(&r.HandleMsg, key)
		}
		return d.skip(1)
	})
}

// decodeTencent reads a Tencent friend callback into r, which must be reset, with d (see
// decodeOpenIM). A batch of more than limit items is refused (*tooLarge) without holding
// the excess.
func decodeTencent(d *bodyDecoder, body []byte, limit int, r *tencentRequest) error {
	return d.decodeBody(body, tencentFields, func(i int, key string) error {
		switch i {
		case 0:
			return d.str(&r.CallbackCommand, key)
		case 1:
			return d.str(&r.FromAccount, key)
		case 2:
			return decodeArray(d, &r.FriendItem, key, limit, "items", decodeFriendItem)
		case 3:
			return decodeArray(d, &r.ResponseFriendItem, key, limit, "items", decodeResponseItem)
		case 4:
			return d.str(&r.AddType, key)
		case 5:
			return d.int64(&r.ForceAddFlags, key)
		case 6:
			return d.int64(&r.EventTime, key)
		}
		return d.skip(1)
	})
}

// decodeBody reads body, a JSON object (or null), calling field with the index of each
// key among fields (-1 for others), which must read the value.
func (d *bodyDecoder) decodeBody(body []byte, fields *fieldSet, field func(i int, key string) error) error {
	*d = bodyDecoder{s: string(body)}
	isNull, err := d.openTop()
	if err != nil || isNull {
		return err
	}
	if err := d.members(fields, field); err != nil {
		return err
	}
	return d.end()
}

// decodeArray reads an array (or null) of key's value into dst with elem, counting but
// not keeping the elements past limit (what names them in the error).
func decodeArray[T any](d *bodyDecoder, dst *[]T, key string, limit int, what string, elem func(*bodyDecoder, *T, string) error) error {
	isNull, err := d.openArray(key)
	if err != nil {
		return err
	}
	if isNull {
		*dst = nil
		return nil
	}
	list := (*dst)[:0]
	var zero T
	n := 0
	for first := true; ; first = false {
		done, err := d.element(first)
		if err != nil {
			return err
		}
		if done {
			break
		}
		if n++; n > limit {
			if err := d.skip(2); err != nil {
				return err
			}
			continue
		}
		list = append(list, zero)
		if err := elem(d, &list[len(list)-1], key); err != nil {
			return err
		}
	}
	*dst = list
	return itemsOver(n, limit, what)
}

func decodeFriendItem(d *bodyDecoder, f *tencentFriendItem, key string) error {
	return d.object(key, tencentFriendFields, func(i int, k string) error {
		switch i {
		case 0:
			return d.str(&f.ToAccount, k)
		case 1:
			return d.str(&f.Remark, k)
		case 2:
			return d.str(&f.GroupName, k)
		case 3:
			return d.str(&f.AddSource, k)
		case 4:
			return d.str(&f.AddWording, k)
		}
		return d.skip(3)
	})
}

func decodeResponseItem(d *bodyDecoder, f *tencentResponseItem, key string) error {
	return d.object(key, tencentResponseFields, func(i int, k string) error {
		switch i {
		case 0:
			return d.str(&f.ToAccount, k)
		case 1:
			return d.str(&f.Remark, k)
		case 2:
			return d.str(&f.TagName, k)
		case 3:
			return d.str(&f.ResponseAction, k)
		}
		return d.skip(3)
	})
}

// decodeUserID reads one user ID of a list; null is "".
func decodeUserID(d *bodyDecoder, s *string, key string) error { return d.str(s, key) }

// object reads an item object (or null) at depth 3, calling field with the index of each
// key among fields (-1 for others), which must read the value.
func (d *bodyDecoder) object(key string, fields *fieldSet, field func(i int, key string) error) error {
	d.ws()
	if d.consumeNull() {
		return nil
	}
	if d.i >= len(d.s) {
		return d.eof()
	}
	if d.s[d.i] != '{' {
		return d.typeError(key, "an object")
	}
	d.i++
	return d.members(fields, field)
}

// members reads the members of an object whose '{' is read, through its '}', calling
// field with the index of each key among fields (-1 for others), which must read the
// value.
func (d *bodyDecoder) members(fields *fieldSet, field func(i int, key string) error) error {
	next := 0
	for first := true; ; first = false {
		i, key, done, err := d.field(first, fields, next)
		if err != nil || done {
			return err
		}
		if i >= 0 {
			next = i + 1
		}
		if err := field(i, key); err != nil {
			return err
		}
	}
}

// openTop reads the start of the body: '{', or a null, which decodes to nothing.
func (d *bodyDecoder) openTop() (isNull bool, err error) {
	d.ws()
	if d.i >= len(d.s) {
		return false, d.eof()
	}
	switch c := d.s[d.i]; {
	case c == '{':
		d.i++
		return false, nil
	case d.consumeNull():
		return true, d.end()
	}
	// encoding/json refuses a syntax error anywhere before a type error.
	if err := d.skip(0); err != nil {
		return false, err
	}
	return false, &jsonError{0, "the body is not a JSON object"}
}

// end checks that nothing but white space follows the top-level value.
func (d *bodyDecoder) end() error {
	d.ws()
	if d.i < len(d.s) {
		return d.invalid("after the top-level value")
	}
	return nil
}

// field reads the next key of an object and its colon, and finds it among fields (-1:
// none); done reports the object's end. IM servers send a body's fields in one order, so
// it first tries the field that follows the previous one (next): when the body holds
// that name, quoted, at this point, the key is exactly it (a name has no quote or
// backslash), found with one comparison instead of a scan and a lookup.
func (d *bodyDecoder) field(first bool, fields *fieldSet, next int) (i int, key string, done bool, err error) {
	if done, err = d.keyStart(first); err != nil || done {
		return -1, "", done, err
	}
	if next < len(fields.quoted) {
		if q := fields.quoted[next]; strings.HasPrefix(d.s[d.i:], q) {
			d.i += len(q)
			return next, fields.names[next], false, d.colon()
		}
	}
	if key, err = d.keyString(); err != nil {
		return -1, "", false, err
	}
	return fields.index(key), key, false, nil
}

// key reads the next key of an object and its colon; done reports the object's end.
func (d *bodyDecoder) key(first bool) (key string, done bool, err error) {
	if done, err = d.keyStart(first); err != nil || done {
		return "", done, err
	}
	key, err = d.keyString()
	return key, false, err
}

// keyStart passes the white space and, unless first, the comma before an object's next
// key; done reports the object's closing brace instead.
func (d *bodyDecoder) keyStart(first bool) (done bool, err error) {
	d.ws()
	if d.i >= len(d.s) {
		return false, d.eof()
	}
	switch c := d.s[d.i]; {
	case c == '}':
		d.i++
		return true, nil
	case first:
	case c == ',':
		d.i++
		d.ws()
		if d.i >= len(d.s) {
			return false, d.eof()
		}
	default:
		return false, d.invalid("after an object value")
	}
	return false, nil
}

// keyString reads a key and its colon.
func (d *bodyDecoder) keyString() (string, error) {
	if d.s[d.i] != '"' {
		return "", d.invalid("looking for the beginning of an object key")
	}
	key, err := d.readString()
	if err != nil {
		return "", err
	}
	return key, d.colon()
}

// colon passes the white space and the colon after an object key.
func (d *bodyDecoder) colon() error {
	d.ws()
	if d.i >= len(d.s) {
		return d.eof()
	}
	if d.s[d.i] != ':' {
		return d.invalid("after an object key")
	}
	d.i++
	return nil
}

// openArray reads the start of an array value, or a null.
func (d *bodyDecoder) openArray(key string) (isNull bool, err error) {
	d.ws()
	if d.consumeNull() {
		return true, nil
	}
	if d.i >= len(d.s) {
		return false, d.eof()
	}
	if d.s[d.i] != '[' {
		return false, d.typeError(key, "an array")
	}
	d.i++
	return false, nil
}

// element moves to the next element of an array; done reports the array's end.
func (d *bodyDecoder) element(first bool) (done bool, err error) {
	d.ws()
	if d.i >= len(d.s) {
		return false, d.eof()
	}
	switch c := d.s[d.i]; {
	case c == ']':
		d.i++
		return true, nil
	case first:
		return false, nil
	case c == ',':
		d.i++
		return false, nil
	}
	return false, d.invalid("after an array element")
}

// str reads a string value into dst; null leaves dst as it is.
func (d *bodyDecoder) str(dst *string, key string) error {
	d.ws()
	if d.i >= len(d.s) {
		return d.eof()
	}
	switch d.s[d.i] {
	case '"':
		s, err := d.readString()
		*dst = s
		return err
	case 'n':
		if d.consumeNull() {
			return nil
		}
	}
	return d.typeError(key, "a string")
}

// int64 reads an integer value into dst; null leaves dst as it is. Like encoding/json,
// it refuses a fraction or exponent even when the value is whole.
func (d *bodyDecoder) int64(dst *int64, key string) error {
	d.ws()
	if d.consumeNull() {
		return nil
	}
	start := d.i
	if err := d.number(); err != nil {
		if start < len(d.s) && (d.s[start] == '-' || isDigit(d.s[start])) {
			return err
		}
		return d.typeError(key, "an integer")
	}
	if n, ok := smallInt(d.s[start:d.i]); ok {
		*dst = n
		return nil
	}
	n, err := strconv.ParseInt(d.s[start:d.i], 10, 64)
	if err != nil {
		return &jsonError{start, fmt.Sprintf("%q: %s is not a 64-bit integer", key, text.Truncate(d.s[start:d.i], 32))}
	}
	*dst = n
	return nil
}

// skip checks and passes over one value nested depth levels deep.
func (d *bodyDecoder) skip(depth int) error {
	d.ws()
	if d.i >= len(d.s) {
		return d.eof()
	}
	switch c := d.s[d.i]; c {
	case '"':
		end, _, err := d.scanString()
		d.i = end
		return err
	case '{':
		if depth++; depth > maxNestingDepth {
			return &jsonError{d.i, "nested too deeply"}
		}
		d.i++
		for first := true; ; first = false {
			_, done, err := d.key(first)
			if err != nil || done {
				return err
			}
			if err := d.skip(depth); err != nil {
				return err
			}
		}
	case '[':
		if depth++; depth > maxNestingDepth {
			return &jsonError{d.i, "nested too deeply"}
		}
		d.i++
		for first := true; ; first = false {
			done, err := d.element(first)
			if err != nil || done {
				return err
			}
			if err := d.skip(depth); err != nil {
				return err
			}
		}
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	}
	return d.number()
}

func (d *bodyDecoder) consumeNull() bool {
	if strings.HasPrefix(d.s[d.i:], "null") {
		d.i += 4
		return true
	}
	return false
}

func (d *bodyDecoder) literal(lit string) error {
	for j := 0; j < len(lit); j++ {
		if d.i >= len(d.s) {
			return d.eof()
		}
		if d.s[d.i] != lit[j] {
			return d.invalid("in literal " + lit)
		}
		d.i++
	}
	return nil
}

// number passes over a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *bodyDecoder) number() error {
	if d.i < len(d.s) && d.s[d.i] == '-' {
		d.i++
	}
	if d.i >= len(d.s) {
		return d.eof()
	}
	switch c := d.s[d.i]; {
	case c == '0':
		d.i++
	case '1' <= c && c <= '9':
		d.digits()
	default:
		return d.invalid("looking for the beginning of a value")
	}
	if d.i < len(d.s) && d.s[d.i] == '.' {
		d.i++
		if err := d.someDigits("after a decimal point"); err != nil {
			return err
		}
	}
	if d.i < len(d.s) && (d.s[d.i] == 'e' || d.s[d.i] == 'E') {
		d.i++
		if d.i < len(d.s) && (d.s[d.i] == '+' || d.s[d.i] == '-') {
			d.i++
		}
		if err := d.someDigits("in an exponent"); err != nil {
			return err
		}
	}
	return nil
}

// smallInt reads a number of at most 18 digits, with no sign, fraction or exponent: the
// integers callbacks carry (flags, millisecond times), which cannot overflow. Others are
// left to strconv.
func smallInt(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func (d *bodyDecoder) someDigits(where string) error {
	if d.i >= len(d.s) {
		return d.eof()
	}
	if !isDigit(d.s[d.i]) {
		return d.invalid(where)
	}
	d.digits()
	return nil
}

func (d *bodyDecoder) digits() {
	for d.i < len(d.s) && isDigit(d.s[d.i]) {
		d.i++
	}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func (d *bodyDecoder) ws() {
	// Callback bodies are mostly compact: the next byte is seldom white space.
	if d.i < len(d.s) && d.s[d.i] > ' ' {
		return
	}
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// readString reads the string at d.i: a substring of the body when it needs no
// unescaping, which is the common case.
func (d *bodyDecoder) readString() (string, error) {
	start := d.i + 1
	end, plain, err := d.scanString()
	if err != nil {
		return "", err
	}
	d.i = end
	if plain {
		return d.s[start : end-1], nil
	}
	return unquote(d.s[start : end-1]), nil
}

// stringStop marks the bytes a string's fast scan stops at: its end, an escape, a control
// character and the first byte of a multi-byte UTF-8 sequence.
var stringStop = func() (t [256]bool) {
	for c := range t {
		t[c] = c == '"' || c == '\\' || c < 0x20 || c >= utf8.RuneSelf
	}
	return t
}()

const (
	lsbs = 0x0101010101010101
	msbs = 0x8080808080808080
)

// load64 reads the eight bytes of s from i, little-endian (one load once compiled).
func load64(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// stopsScan reports whether a byte of w is one stringStop marks: a quote, a backslash, a
// control character or a byte of a multi-byte sequence. hasZero and the test for bytes
// below 0x20 are the classic word-at-a-time tests: exact on whether any byte matches.
func stopsScan(w uint64) bool {
	hasZero := func(x uint64) uint64 { return (x - lsbs) & ^x & msbs }
	return (hasZero(w^(lsbs*'"')) | hasZero(w^(lsbs*'\\')) | ((w - lsbs*0x20) &^ w & msbs) | w&msbs) != 0
}

// scanString checks the string starting at d.i and returns the index past its closing
// quote, and whether its content is valid UTF-8 without escapes.
func (d *bodyDecoder) scanString() (end int, plain bool, err error) {
	plain = true
	for j := d.i + 1; j < len(d.s); {
		// Most of a callback's bytes are plain ASCII inside strings: pass them eight at a
		// time while no byte of the word stops the scan, then by table.
		for j+8 <= len(d.s) && !stopsScan(load64(d.s, j)) {
			j += 8
		}
		for j < len(d.s) && !stringStop[d.s[j]] {
			j++
		}
		if j >= len(d.s) {
			break
		}
		c := d.s[j]
		switch {
		case c == '"':
			return j + 1, plain, nil
		case c == '\\':
			plain = false
			if j+1 >= len(d.s) {
				return 0, false, d.eof()
			}
			switch d.s[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				for k := j + 2; k < j+6; k++ {
					if k >= len(d.s) {
						return 0, false, d.eof()
					}
					if !isHex(d.s[k]) {
						return 0, false, &jsonError{k, "invalid character " + quoteChar(d.s[k]) + " in a \\u escape"}
					}
				}
				j += 6
			default:
				return 0, false, &jsonError{j + 1, "invalid character " + quoteChar(d.s[j+1]) + " in a string escape"}
			}
		case c < 0x20:
			return 0, false, &jsonError{j, "invalid control character " + quoteChar(c) + " in a string"}
		default:
			r, size := utf8.DecodeRuneInString(d.s[j:])
			if r == utf8.RuneError && size == 1 {
				plain = false
			}
			j += size
		}
	}
	return 0, false, d.eof()
}

// unquote decodes the escapes of a checked string's content and replaces invalid UTF-8
// and lone surrogates with U+FFFD, as encoding/json does.
func unquote(s string) string {
	b := make([]byte, 0, len(s)+2*utf8.UTFMax)
	for i := 0; i < len(s); {
		c := s[i]
		if c == '\\' {
			switch s[i+1] {
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r := hex4(s[i+2:])
				i += 6
				if utf16.IsSurrogate(r) {
					if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
						if dec := utf16.DecodeRune(r, hex4(s[i+2:])); dec != utf8.RuneError {
							b = utf8.AppendRune(b, dec)
							i += 6
							continue
						}
					}
					r = utf8.RuneError
				}
				b = utf8.AppendRune(b, r)
				continue
			default: // '"', '\\', '/'
				b = append(b, s[i+1])
			}
			i += 2
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, c)
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return string(b)
}

func hex4(s string) rune {
	var r rune
	for _, c := range []byte(s[:4]) {
		r <<= 4
		switch {
		case c <= '9':
			r |= rune(c - '0')
		case c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			r |= rune(c - 'a' + 10)
		}
	}
	return r
}

func isHex(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// quoteChar formats c as encoding/json's syntax errors do.
func quoteChar(c byte) string {
	switch c {
	case '\'':
		return `'\''`
	case '"':
		return `'"'`
	}
	q := strconv.Quote(string(rune(c)))
	return "'" + q[1:len(q)-1] + "'"
}

func (d *bodyDecoder) eof() error { return &jsonError{len(d.s), "unexpected end of JSON input"} }

func (d *bodyDecoder) invalid(where string) error {
	if d.i >= len(d.s) {
		return d.eof()
	}
	return &jsonError{d.i, "invalid character " + quoteChar(d.s[d.i]) + " " + where}
}

// typeError refuses a value of the wrong type for key. It names the type found, not the
// value, which is the user's.
func (d *bodyDecoder) typeError(key, want string) error {
	found := "a number"
	if d.i < len(d.s) {
		switch d.s[d.i] {
		case '"':
			found = "a string"
		case '{':
			found = "an object"
		case '[':
			found = "an array"
		case 't', 'f':
			found = "a boolean"
		case 'n':
			found = "null"
		}
	}
	return &jsonError{d.i, fmt.Sprintf("%q: expected %s, found %s", key, want, found)}
}
