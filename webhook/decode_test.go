package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeOpenIM(t *testing.T) {
	tests := []struct {
		name, body string
		want       openIMRequest
		wantErr    string
	}{
		{name: "add friend", body: `{"callbackCommand":"callbackBeforeAddFriendCommand","fromUserID":"alice","toUserID":"bob","reqMsg":"hi","ex":"{\"k\":1}"}`,
			want: openIMRequest{CallbackCommand: "callbackBeforeAddFriendCommand", FromUserID: "alice", ToUserID: "bob", ReqMsg: "hi", Ex: `{"k":1}`}},
		{name: "keys match case-insensitively, an exact match first", body: `{"handleMsg":"ok","FROMUSERID":"a","fromUserID":"b"}`,
			want: openIMRequest{HandleMsg: "ok", FromUserID: "b"}},
		{name: "escapes, surrogate pairs, lone surrogates and invalid UTF-8", body: "{\"reqMsg\":\"a\\n\\u00e9\\ud83d\\ude00\\ud800x\\\\\\/\xff\"}",
			want: openIMRequest{ReqMsg: "a\né😀\uFFFDx\\/\uFFFD"}},
		{name: "an escaped key", body: `{"\u0066romUserID":"alice"}`, want: openIMRequest{FromUserID: "alice"}},
		{name: "unknown keys of every type are skipped", body: `{"x":{"a":[1,-2.5e+3,true,false,null,{"b":"c"}]},"y":[],"z":{},"fromUserID":"a"}`,
			want: openIMRequest{FromUserID: "a"}},
		{name: "null leaves a field empty", body: `{"fromUserID":null,"friendUserIDs":null}`},
		{name: "a null body decodes to nothing", body: ` null `},
		{name: "import", body: `{"ownerUserID":"o","friendUserIDs":["a",null,"b"]}`,
			want: openIMRequest{OwnerUserID: "o", FriendUserIDs: []string{"a", "", "b"}}},
		{name: "empty body", body: ``, wantErr: "unexpected end of JSON input (at byte 0)"},
		{name: "truncated", body: `{"fromUserID":`, wantErr: "unexpected end of JSON input"},
		{name: "truncated string", body: `{"fromUserID":"ali`, wantErr: "unexpected end of JSON input"},
		{name: "wrong type names the key, not the value", body: `{"fromUserID":7}`, wantErr: `"fromUserID": expected a string, found a number (at byte 14)`},
		{name: "an array of the wrong type", body: `{"friendUserIDs":"a"}`, wantErr: `"friendUserIDs": expected an array, found a string`},
		{name: "an element of the wrong type", body: `{"friendUserIDs":["a",{}]}`, wantErr: `"friendUserIDs": expected a string, found an object`},
		{name: "not an object", body: `["a"]`, wantErr: "the body is not a JSON object"},
		{name: "trailing data", body: `{} {}`, wantErr: "invalid character '{' after the top-level value (at byte 3)"},
		{name: "trailing comma", body: `{"fromUserID":"a",}`, wantErr: `invalid character '}' looking for the beginning of an object key`},
		{name: "missing comma", body: `{"fromUserID":"a" "toUserID":"b"}`, wantErr: `invalid character '"' after an object value`},
		{name: "control character in a string", body: "{\"reqMsg\":\"a\tb\"}", wantErr: `invalid control character '\t' in a string`},
		{name: "bad escape", body: `{"reqMsg":"\x"}`, wantErr: `invalid character 'x' in a string escape`},
		{name: "bad number in a skipped value", body: `{"x":01}`, wantErr: `invalid character '1' after an object value`},
		{name: "bad literal", body: `{"x":nul}`, wantErr: `invalid character '}' in literal null`},
		{name: "nested too deeply", body: `{"x":` + strings.Repeat("[", maxNestingDepth) + strings.Repeat("]", maxNestingDepth) + `}`, wantErr: "nested too deeply"},
		{name: "nested as deeply as encoding/json allows", body: `{"x":` + strings.Repeat("[", maxNestingDepth-1) + strings.Repeat("]", maxNestingDepth-1) + `}`},
		{name: "too many friend IDs", body: `{"friendUserIDs":["a","b","c","d",null]}`, wantErr: "5 friend IDs in one request, more than the limit of 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got openIMRequest
			got.reset()
			err := decodeOpenIM(&bodyDecoder{}, []byte(tt.body), 3, &got)
			checkDecodeErr(t, err, tt.wantErr)
			if tt.wantErr == "" && !reflect.DeepEqual(normalizeOpenIM(got), normalizeOpenIM(tt.want)) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeTencent(t *testing.T) {
	tests := []struct {
		name, body string
		want       tencentRequest
		wantErr    string
	}{
		{name: "friend add", body: `{"CallbackCommand":"Sns.CallbackPrevFriendAdd","From_Account":"a","FriendItem":[{"To_Account":"b","Remark":"r","GroupName":"g","AddSource":"AddSource_Type_QR","AddWording":"hi","Other":[1]},null],"AddType":"Add_Type_Both","ForceAddFlags":1,"EventTime":1669872112000}`,
			want: tencentRequest{CallbackCommand: "Sns.CallbackPrevFriendAdd", FromAccount: "a", AddType: "Add_Type_Both", ForceAddFlags: 1, EventTime: 1669872112000,
				FriendItem: []tencentFriendItem{{ToAccount: "b", Remark: "r", GroupName: "g", AddSource: "AddSource_Type_QR", AddWording: "hi"}, {}}}},
		{name: "friend response", body: `{"From_Account":"a","ResponseFriendItem":[{"to_account":"b","TagName":"t","ResponseAction":"Response_Action_Agree"}],"EventTime":null}`,
			want: tencentRequest{FromAccount: "a", ResponseFriendItem: []tencentResponseItem{{ToAccount: "b", TagName: "t", ResponseAction: "Response_Action_Agree"}}}},
		{name: "a repeated item array replaces the first", body: `{"FriendItem":[{"To_Account":"a","Remark":"r"}],"FriendItem":[{"To_Account":"b"}]}`,
			want: tencentRequest{FriendItem: []tencentFriendItem{{ToAccount: "b"}}}},
		{name: "keys out of order", body: `{"EventTime":5,"From_Account":"a","CallbackCommand":"c"}`,
			want: tencentRequest{CallbackCommand: "c", FromAccount: "a", EventTime: 5}},
		{name: "a key longer than the expected name", body: `{"CallbackCommand":"c","From_Account2":"x","From_Account":"a"}`,
			want: tencentRequest{CallbackCommand: "c", FromAccount: "a"}},
		{name: "the expected key escaped", body: `{"CallbackCommand":"c","From\u005fAccount":"a"}`,
			want: tencentRequest{CallbackCommand: "c", FromAccount: "a"}},
		{name: "the expected key in other case", body: `{"CallbackCommand":"c","FROM_ACCOUNT":"a"}`,
			want: tencentRequest{CallbackCommand: "c", FromAccount: "a"}},
		{name: "white space around the colon", body: "{ \"CallbackCommand\" :\t\"c\" , \"From_Account\"\n:\"a\" }",
			want: tencentRequest{CallbackCommand: "c", FromAccount: "a"}},
		{name: "a trailing comma", body: `{"CallbackCommand":"c",}`, wantErr: "invalid character '}' looking for the beginning of an object key"},
		{name: "an expected key without its colon", body: `{"CallbackCommand" "c"}`, wantErr: "invalid character '\"' after an object key"},
		{name: "an expected key cut short", body: `{"CallbackCommand"`, wantErr: "unexpected end of JSON input"},
		{name: "negative zero", body: `{"EventTime":-0}`},
		{name: "18 digits", body: `{"EventTime":999999999999999999}`, want: tencentRequest{EventTime: 999999999999999999}},
		{name: "19 digits", body: `{"EventTime":1000000000000000000}`, want: tencentRequest{EventTime: 1000000000000000000}},
		{name: "the largest integer", body: `{"EventTime":9223372036854775807}`, want: tencentRequest{EventTime: 9223372036854775807}},
		{name: "a negative integer", body: `{"ForceAddFlags":-1,"EventTime":-9223372036854775808}`, want: tencentRequest{ForceAddFlags: -1, EventTime: -9223372036854775808}},
		{name: "zero", body: `{"ForceAddFlags":0}`},
		{name: "an integer with a fraction", body: `{"ForceAddFlags":1.0}`, wantErr: `"ForceAddFlags": 1.0 is not a 64-bit integer`},
		{name: "an integer out of range", body: `{"EventTime":9223372036854775808}`, wantErr: "is not a 64-bit integer"},
		{name: "a long integer is cut in the message", body: `{"EventTime":` + strings.Repeat("9", 10000) + `}`,
			wantErr: `"EventTime": ` + strings.Repeat("9", 29) + `... is not a 64-bit integer`},
		{name: "an integer given as a string", body: `{"EventTime":"1"}`, wantErr: `"EventTime": expected an integer, found a string`},
		{name: "a bad number", body: `{"EventTime":-}`, wantErr: `invalid character '}' looking for the beginning of a value`},
		{name: "an item of the wrong type", body: `{"FriendItem":["b"]}`, wantErr: `"FriendItem": expected an object, found a string`},
		{name: "too many items are counted, not kept", body: `{"FriendItem":[{},{},{},{"To_Account":"x"},{}]}`, wantErr: "5 items in one request, more than the limit of 3"},
		{name: "too many response items", body: `{"ResponseFriendItem":[{},{},{},{}]}`, wantErr: "4 items in one request, more than the limit of 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got tencentRequest
			got.reset()
			err := decodeTencent(&bodyDecoder{}, []byte(tt.body), 3, &got)
			checkDecodeErr(t, err, tt.wantErr)
			if tt.wantErr == "" && !reflect.DeepEqual(normalizeTencent(got), normalizeTencent(tt.want)) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func checkDecodeErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Fatalf("got error %v, want one containing %q", err, want)
	}
	var tl *tooLarge
	if err != nil && errors.As(err, &tl) != strings.Contains(want, "more than the limit") {
		t.Fatalf("error %v: a *tooLarge is for the item bound only", err)
	}
}

// FuzzDecodeMatchesStdlib checks the hand-written decoders against encoding/json on the
// same structs: the same bodies are refused, and the others decode to the same values.
// Bodies repeating an item array are left out: encoding/json merges the second array into
// the first one's items, where decodeTencent replaces them (see decode.go).
func FuzzDecodeMatchesStdlib(f *testing.F) {
	for _, bc := range benchCases {
		f.Add([]byte(bc.body))
	}
	for _, s := range []string{
		`{"fromUserID":"a","friendUserIDs":["x",null],"HANDLEMSG":"h","ex":null}`,
		`{"ResponseFriendItem":[{"To_Account":"b","ResponseAction":"Response_Action_Agree"}],"ForceAddFlags":1}`,
		"{\"reqMsg\":\"\\ud83d\\ude00 \\ud800 \xff\",\"x\":[{\"y\":[true,false,null,1e5]}]}",
		`null`, `[]`, `{"EventTime":1.5}`, `{"FriendItem":{}}`, `{"fromUſerID":"a"}`, `{"ToUserıD":"b"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		const limit = 1 << 20
		var got, want openIMRequest
		got.reset()
		errGot, errWant := decodeOpenIM(&bodyDecoder{}, body, limit, &got), json.Unmarshal(body, &want)
		if (errGot == nil) != (errWant == nil) {
			t.Fatalf("OpenIM %q: decodeOpenIM error %v, encoding/json error %v", body, errGot, errWant)
		}
		if errGot == nil && !reflect.DeepEqual(normalizeOpenIM(got), normalizeOpenIM(want)) {
			t.Fatalf("OpenIM %q:\n got %+v\nwant %+v", body, got, want)
		}
		if repeatsItemArray(body) {
			return
		}
		var gotT, wantT tencentRequest
		gotT.reset()
		errGot, errWant = decodeTencent(&bodyDecoder{}, body, limit, &gotT), json.Unmarshal(body, &wantT)
		if (errGot == nil) != (errWant == nil) {
			t.Fatalf("Tencent %q: decodeTencent error %v, encoding/json error %v", body, errGot, errWant)
		}
		if errGot == nil && !reflect.DeepEqual(normalizeTencent(gotT), normalizeTencent(wantT)) {
			t.Fatalf("Tencent %q:\n got %+v\nwant %+v", body, gotT, wantT)
		}
	})
}

// repeatsItemArray reports whether a body's top-level object names one of Tencent's item
// arrays twice.
func repeatsItemArray(body []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return false
	}
	seen := map[int]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if i := tencentFields.index(tok.(string)); i == 2 || i == 3 {
			if seen[i] {
				return true
			}
			seen[i] = true
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return false
		}
	}
	return false
}

// normalizeOpenIM and normalizeTencent treat an empty list as no list: the handler does.
func normalizeOpenIM(r openIMRequest) openIMRequest {
	if len(r.FriendUserIDs) == 0 {
		r.FriendUserIDs = nil
	}
	return r
}

func normalizeTencent(r tencentRequest) tencentRequest {
	if len(r.FriendItem) == 0 {
		r.FriendItem = nil
	}
	if len(r.ResponseFriendItem) == 0 {
		r.ResponseFriendItem = nil
	}
	return r
}

// TestStopsScan checks the word-at-a-time test against the byte table, on words built from
// the bytes around each boundary it must tell apart.
func TestStopsScan(t *testing.T) {
	edges := []byte{0x00, 0x01, 0x1f, 0x20, 0x21, '"', '#', '[', '\\', ']', 0x7e, 0x7f, 0x80, 0x81, 0xfe, 0xff, 'a'}
	rng := rand.New(rand.NewPCG(3, 4))
	var b [8]byte
	for range 200_000 {
		want := false
		for i := range b {
			b[i] = edges[rng.IntN(len(edges))]
			if rng.IntN(3) > 0 {
				b[i] = 'a' + byte(rng.IntN(26))
			}
			want = want || stringStop[b[i]]
		}
		if got := stopsScan(load64(string(b[:]), 0)); got != want {
			t.Fatalf("stopsScan(%q) = %v, want %v", b, got, want)
		}
	}
}

// TestFieldSetIndex: a key finds its field as encoding/json would, whether its hash slot
// holds one name, several or none.
func TestFieldSetIndex(t *testing.T) {
	// "ab" and "AB" hash alike only if their first bytes agree modulo 64: 'a' (97) and
	// '!' (33) do, so "ab" and "!b" share a slot.
	shared := newFieldSet("ab", "!b", "cd")
	if fieldHash("ab") != fieldHash("!b") || shared.slot[fieldHash("ab")] != -1 {
		t.Fatalf("the test's names do not share a slot")
	}
	for _, tc := range []struct {
		set  *fieldSet
		key  string
		want int
	}{
		{tencentFields, "CallbackCommand", 0},
		{tencentFields, "EventTime", 6},
		{tencentFields, "eventtime", 6},
		{tencentFields, "EVENTTIME", 6},
		{tencentFields, "Event_Time", -1},
		{tencentFields, "", -1},
		{tencentFriendFields, "AddWording", 4},
		{tencentFriendFields, "to_account", 0},
		{openIMFields, "ex", 4},
		{openIMFields, "EX", 4},
		{openIMFields, "remar\u212a", 7}, // the Kelvin sign folds to k
		{shared, "ab", 0},
		{shared, "!b", 1},
		{shared, "AB", 0},
		{shared, "cd", 2},
		{shared, "ef", -1},
	} {
		if got := tc.set.index(tc.key); got != tc.want {
			t.Errorf("index(%q) among %q = %d, want %d", tc.key, tc.set.names, got, tc.want)
		}
	}
}
