package policy

import (
	"strings"
	"unicode/utf8"

	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
)

// Most `when`s compare request fields with constants through a few string functions. Such
// an expression is compiled to Go functions over the Request: evaluating it neither boxes
// a field nor allocates, and costs a fraction of CEL's interpreter. Everything it can do
// is total (no operation can fail), so && and || short-circuit exactly as CEL's
// commutative operators decide; an expression with anything else runs through CEL.

type (
	nativeBool func(*Request) bool
	nativeStr  func(*Request) string
	nativeInt  func(*Request) int64
)

// nativeWhen compiles a checked `when` made only of: request fields; string, int and bool
// literals; !, &&, ||; == and != on strings, ints and bools; <, <=, >, >= on ints;
// startsWith, endsWith and contains; trim and size on strings. (lowerAscii is left to CEL,
// which also turns invalid UTF-8 into U+FFFD.)
func nativeWhen(e ast.Expr) (nativeBool, bool) { return nativeBoolExpr(e) }

func nativeBoolExpr(e ast.Expr) (nativeBool, bool) {
	if e.Kind() == ast.CallKind {
		return nativeBoolCall(e.AsCall())
	}
	return nativeLeaf(e, fieldForceAdd, func(r *Request) bool { return r.ForceAdd })
}

// nativeLeaf compiles a literal of Go type T (CEL's bool, int or string), or the request
// field f, which read returns.
func nativeLeaf[T bool | int64 | string](e ast.Expr, f reqField, read func(*Request) T) (func(*Request) T, bool) {
	switch e.Kind() {
	case ast.LiteralKind:
		if v, ok := e.AsLiteral().Value().(T); ok {
			return func(*Request) T { return v }, true
		}
	case ast.SelectKind:
		if got, ok := anyRequestField(e); ok && got == f {
			return read, true
		}
	}
	return nil, false
}

func nativeBoolCall(call ast.CallExpr) (nativeBool, bool) {
	args := call.Args()
	if call.IsMemberFunction() {
		if len(args) != 1 {
			return nil, false
		}
		s, ok1 := nativeStrExpr(call.Target())
		arg, ok2 := nativeStrExpr(args[0])
		if !ok1 || !ok2 {
			return nil, false
		}
		switch call.FunctionName() {
		case "startsWith":
			return func(r *Request) bool { return strings.HasPrefix(s(r), arg(r)) }, true
		case "endsWith":
			return func(r *Request) bool { return strings.HasSuffix(s(r), arg(r)) }, true
		case "contains":
			return func(r *Request) bool { return strings.Contains(s(r), arg(r)) }, true
		}
		return nil, false
	}
	switch name := call.FunctionName(); {
	case name == operators.LogicalNot && len(args) == 1:
		x, ok := nativeBoolExpr(args[0])
		if !ok {
			return nil, false
		}
		return func(r *Request) bool { return !x(r) }, true
	case (name == operators.LogicalAnd || name == operators.LogicalOr) && len(args) == 2:
		a, okA := nativeBoolExpr(args[0])
		b, okB := nativeBoolExpr(args[1])
		if !okA || !okB {
			return nil, false
		}
		if name == operators.LogicalAnd {
			return func(r *Request) bool { return a(r) && b(r) }, true
		}
		return func(r *Request) bool { return a(r) || b(r) }, true
	case len(args) == 2:
		return nativeComparison(name, args[0], args[1])
	}
	return nil, false
}

func nativeComparison(name string, x, y ast.Expr) (nativeBool, bool) {
	if a, ok := nativeStrExpr(x); ok {
		if b, ok := nativeStrExpr(y); ok {
			return nativeEquality(name, a, b)
		}
		return nil, false
	}
	if a, ok := nativeIntExpr(x); ok {
		b, ok := nativeIntExpr(y)
		if !ok {
			return nil, false
		}
		switch name {
		case operators.Less:
			return func(r *Request) bool { return a(r) < b(r) }, true
		case operators.LessEquals:
			return func(r *Request) bool { return a(r) <= b(r) }, true
		case operators.Greater:
			return func(r *Request) bool { return a(r) > b(r) }, true
		case operators.GreaterEquals:
			return func(r *Request) bool { return a(r) >= b(r) }, true
		}
		return nativeEquality(name, a, b)
	}
	if a, ok := nativeBoolExpr(x); ok {
		if b, ok := nativeBoolExpr(y); ok {
			return nativeEquality(name, a, b)
		}
	}
	return nil, false
}

// nativeEquality compiles == and != of a and b.
func nativeEquality[T comparable](name string, a, b func(*Request) T) (nativeBool, bool) {
	switch name {
	case operators.Equals:
		return func(r *Request) bool { return a(r) == b(r) }, true
	case operators.NotEquals:
		return func(r *Request) bool { return a(r) != b(r) }, true
	}
	return nil, false
}

func nativeStrExpr(e ast.Expr) (nativeStr, bool) {
	switch e.Kind() {
	case ast.LiteralKind:
		if v, ok := e.AsLiteral().Value().(string); ok {
			return func(*Request) string { return v }, true
		}
	case ast.SelectKind:
		if f, ok := anyRequestField(e); ok && f < numStringFields {
			return func(r *Request) string { return r.str(f) }, true
		}
	case ast.CallKind:
		call := e.AsCall()
		if !call.IsMemberFunction() || len(call.Args()) != 0 {
			return nil, false
		}
		s, ok := nativeStrExpr(call.Target())
		if !ok {
			return nil, false
		}
		if call.FunctionName() == "trim" {
			return func(r *Request) string { return strings.TrimSpace(s(r)) }, true
		}
	}
	return nil, false
}

func nativeIntExpr(e ast.Expr) (nativeInt, bool) {
	if e.Kind() != ast.CallKind {
		return nativeLeaf(e, fieldEventTime, func(r *Request) int64 { return r.EventTime })
	}
	call := e.AsCall()
	if call.FunctionName() != "size" {
		return nil, false
	}
	var target ast.Expr
	switch {
	case call.IsMemberFunction() && len(call.Args()) == 0:
		target = call.Target()
	case !call.IsMemberFunction() && len(call.Args()) == 1:
		target = call.Args()[0]
	default:
		return nil, false
	}
	s, ok := nativeStrExpr(target)
	if !ok {
		return nil, false
	}
	// CEL counts code points; an invalid byte counts as one, as here.
	return func(r *Request) int64 { return int64(utf8.RuneCountInString(s(r))) }, true
}

// anyRequestField recognises request.<field>, of any type.
func anyRequestField(e ast.Expr) (reqField, bool) {
	if e.Kind() != ast.SelectKind {
		return 0, false
	}
	sel := e.AsSelect()
	if sel.IsTestOnly() || sel.Operand().Kind() != ast.IdentKind || sel.Operand().AsIdent() != celRequest {
		return 0, false
	}
	return fieldByName(sel.FieldName())
}
