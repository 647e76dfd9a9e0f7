package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"
	"github.com/google/cel-go/parser"
)

// A `when` is type-checked against the Request struct (so errors read as they always
// have), then, when it only reads fields as request.<field>, compiled a second time over
// one variable per field: evaluating that program reads fields straight from the Request,
// with no reflection.
//
// A runtime cost limit costs a tracker per evaluation. The fast program has none when the
// checker's worst-case estimate, with every request string at most fastCELMaxString
// characters, is within celCostLimit: for such requests the limit cannot be reached. A
// longer request, or an expression without such a bound, runs the tracked program.

// fastCELMaxString bounds the request strings the untracked program may see.
const fastCELMaxString = 16 << 10

// reqField numbers the Request fields CEL sees, in celFields order.
type reqField uint8

const (
	fieldEvent reqField = iota
	fieldAppID
	fieldFrom
	fieldTo
	fieldWording
	fieldRemark
	fieldGroupName
	fieldAddSource
	fieldAddType
	fieldResponseAction
	fieldPlatform
	fieldClientIP
	fieldEx
	fieldForceAdd
	fieldEventTime
	numFields
)

// numStringFields counts the string fields, which come first.
const numStringFields = fieldForceAdd

var celFields = [numFields]struct {
	name string
	typ  *cel.Type
}{
	{"event", cel.StringType}, {"appID", cel.StringType}, {"from", cel.StringType}, {"to", cel.StringType},
	{"wording", cel.StringType}, {"remark", cel.StringType}, {"groupName", cel.StringType},
	{"addSource", cel.StringType}, {"addType", cel.StringType}, {"responseAction", cel.StringType},
	{"platform", cel.StringType}, {"clientIP", cel.StringType}, {"ex", cel.StringType},
	{"forceAdd", cel.BoolType}, {"eventTime", cel.IntType},
}

// str returns a string field of r.
func (r *Request) str(f reqField) string {
	switch f {
	case fieldEvent:
		return r.Event
	case fieldAppID:
		return r.AppID
	case fieldFrom:
		return r.From
	case fieldTo:
		return r.To
	case fieldWording:
		return r.Wording
	case fieldRemark:
		return r.Remark
	case fieldGroupName:
		return r.GroupName
	case fieldAddSource:
		return r.AddSource
	case fieldAddType:
		return r.AddType
	case fieldResponseAction:
		return r.ResponseAction
	case fieldPlatform:
		return r.Platform
	case fieldClientIP:
		return r.ClientIP
	case fieldEx:
		return r.Ex
	}
	return ""
}

func fieldByName(name string) (reqField, bool) {
	for i := range celFields {
		if celFields[i].name == name {
			return reqField(i), true
		}
	}
	return 0, false
}

var fastCELEnv = sync.OnceValues(func() (*cel.Env, error) {
	opts := []cel.EnvOption{ext.Strings()}
	for _, f := range celFields {
		opts = append(opts, cel.Variable("request."+f.name, f.typ))
	}
	return cel.NewEnv(opts...)
})

// whenProgram is a compiled `when`.
type whenProgram struct {
	expr string
	// tracked runs with the cost limit; it serves every request the untracked programs
	// cannot. With an untracked program it is compiled on first use: only a request with a
	// string over fastCELMaxString needs it, and a program holds several KiB.
	tracked     cel.Program
	trackedErr  error
	trackedOnce sync.Once
	// fast is the untracked program of the whole expression when it has no guard, or when
	// what follows the guard has no untracked program of its own; nil when there is none.
	fast cel.Program
	// guard is the indexable condition of the top-level conjunction, nil when there is none.
	guard *celGuard
	// rest is the untracked program of the other terms of the conjunction, which decides
	// once the guard holds. Policies written from one template differ in their guards'
	// constants: they share one rest, compiled once. Nil when there is none.
	rest *restProgram
	// guardOnly reports that the guard is the whole expression.
	guardOnly bool
	// native evaluates the expression without CEL, when it is made of what nativeWhen
	// compiles; then it serves every request, and there are no programs.
	native nativeBool
}

// restProgram is the untracked program of the terms of a `when` besides its guard.
type restProgram struct{ prg cel.Program }

// compileWhenProgram compiles a `when`; the error is the type checker's.
func compileWhenProgram(expr string) (*whenProgram, error) {
	checked, err := checkWhen(expr)
	if err != nil {
		return nil, err
	}
	w := &whenProgram{expr: expr}
	var rest []ast.Expr
	w.guard, rest = findGuard(checked.NativeRep().Expr())
	if w.native, _ = nativeWhen(checked.NativeRep().Expr()); w.native != nil {
		return w, nil
	}
	if w.guard != nil {
		if len(rest) == 0 {
			w.guardOnly = true
			return w, nil
		}
		if text, ok := unparseConjunction(rest, checked.NativeRep().SourceInfo()); ok {
			if w.rest, err = restCache.get(text, func() (*restProgram, error) {
				prg, err := compileFastWhen(text)
				if prg == nil || err != nil {
					return nil, errNoRest
				}
				return &restProgram{prg}, nil
			}); err == nil {
				return w, nil
			}
		}
	}
	if w.fast, err = compileFastWhen(expr); err != nil {
		return nil, err
	}
	if w.fast == nil {
		w.trackedOnce.Do(func() { w.tracked, w.trackedErr = trackedWhen(checked) })
		if w.trackedErr != nil {
			return nil, w.trackedErr
		}
	}
	return w, nil
}

// errNoRest is what the rest of a `when` without an untracked program of its own caches as
// (errors are not cached): the whole expression is compiled instead.
var errNoRest = errors.New("no untracked program")

// unparseConjunction writes terms back as one CEL conjunction.
func unparseConjunction(terms []ast.Expr, info *ast.SourceInfo) (string, bool) {
	var sb strings.Builder
	for i, t := range terms {
		text, err := parser.Unparse(t, info)
		if err != nil {
			return "", false
		}
		if i > 0 {
			sb.WriteString(" && ")
		}
		sb.WriteString("(" + text + ")")
	}
	return sb.String(), true
}

// compileFastWhen compiles the untracked program of expr, or returns nil when expr has none.
func compileFastWhen(expr string) (cel.Program, error) {
	env, err := fastCELEnv()
	if err != nil {
		return nil, fmt.Errorf("CEL environment: %w", err)
	}
	fastAST, iss := env.Compile(expr)
	if iss.Err() != nil || !fastAST.OutputType().IsExactType(cel.BoolType) {
		return nil, nil
	}
	est, err := env.EstimateCost(fastAST, boundedStrings{})
	if err != nil || est.Max > celCostLimit {
		return nil, nil
	}
	return env.Program(fastAST, cel.EvalOptions(cel.OptOptimize))
}

// trackedProgram returns the program with the cost limit, compiling it on first use.
func (w *whenProgram) trackedProgram() (cel.Program, error) {
	w.trackedOnce.Do(func() {
		checked, err := checkWhen(w.expr)
		if err != nil {
			w.trackedErr = err
			return
		}
		w.tracked, w.trackedErr = trackedWhen(checked)
	})
	return w.tracked, w.trackedErr
}

// boundedStrings tells the cost estimator that request strings are at most
// fastCELMaxString characters long.
type boundedStrings struct{}

func (boundedStrings) EstimateSize(checker.AstNode) *checker.SizeEstimate {
	return &checker.SizeEstimate{Min: 0, Max: fastCELMaxString}
}

func (boundedStrings) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// fitsFastCEL reports whether r's strings are within the bound of the untracked programs.
func fitsFastCEL(r *Request) bool {
	for f := range numStringFields {
		if len(r.str(f)) > fastCELMaxString {
			return false
		}
	}
	return true
}

// celActivation resolves request.<field> for the fast programs. Boxing a string for CEL
// allocates, so a field is boxed once per request, however many expressions read it.
type celActivation struct {
	r     *Request
	boxed [numFields]ref.Val
	// dirty is set once a field is boxed, so most decisions skip clearing boxed.
	dirty bool
}

func (a *celActivation) reset(r *Request) {
	a.r = r
	if a.dirty {
		a.boxed, a.dirty = [numFields]ref.Val{}, false
	}
}

func (a *celActivation) ResolveName(name string) (any, bool) {
	if len(name) <= len("request.") || name[:len("request.")] != "request." {
		return nil, false
	}
	f, ok := fieldByName(name[len("request."):])
	if !ok {
		return nil, false
	}
	if v := a.boxed[f]; v != nil {
		return v, true
	}
	var v ref.Val
	switch f {
	case fieldForceAdd:
		v = types.Bool(a.r.ForceAdd)
	case fieldEventTime:
		v = types.Int(a.r.EventTime)
	default:
		v = types.String(a.r.str(f))
	}
	a.boxed[f], a.dirty = v, true
	return v, true
}

func (a *celActivation) Parent() interpreter.Activation { return nil }

// eval runs the program; an error or a non-bool result means the condition fails. With
// fast, every request string is within fastCELMaxString. A guard that fails decides the
// conjunction on its own, as CEL's && does whatever the other terms would give.
func (w *whenProgram) eval(act *celActivation, fast bool) (bool, error) {
	switch {
	case w.native != nil:
		return w.native(act.r), nil
	case w.guardOnly:
		return w.guard.holds(act.r), nil
	case fast && w.rest != nil:
		if !w.guard.holds(act.r) {
			return false, nil
		}
		return boolResult(w.rest.prg.Eval(act))
	case fast && w.fast != nil:
		return boolResult(w.fast.Eval(act))
	}
	prg, err := w.trackedProgram()
	if err != nil {
		return false, err
	}
	return evalWhen(prg, act.r)
}

func boolResult(out ref.Val, _ *cel.EvalDetails, err error) (bool, error) {
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("when evaluated to %s, not bool", out.Type())
	}
	return bool(b), nil
}

// celGuard is a condition on one string field that the whole `when` needs: the value is
// one of values, or (prefix) starts with one of them.
type celGuard struct {
	field  reqField
	prefix bool
	values []string
}

// findGuard looks through the top-level conjunction of a checked `when` for a term
// request.<field> == 'c', 'c' == request.<field>, request.<field>.startsWith('c') or
// request.<field> in ['a', 'b'], and returns it with the other terms. An equality is
// preferred to a prefix; the first wins.
func findGuard(e ast.Expr) (*celGuard, []ast.Expr) {
	var best *celGuard
	at := -1
	terms := conjuncts(e, nil)
	for i, term := range terms {
		g := guardOf(term)
		if g != nil && (best == nil || (best.prefix && !g.prefix)) {
			best, at = g, i
		}
	}
	if best == nil {
		return nil, nil
	}
	return best, slices.Delete(terms, at, at+1)
}

func conjuncts(e ast.Expr, out []ast.Expr) []ast.Expr {
	if e.Kind() == ast.CallKind && e.AsCall().FunctionName() == operators.LogicalAnd {
		for _, arg := range e.AsCall().Args() {
			out = conjuncts(arg, out)
		}
		return out
	}
	return append(out, e)
}

func guardOf(e ast.Expr) *celGuard {
	if e.Kind() != ast.CallKind {
		return nil
	}
	call := e.AsCall()
	args := call.Args()
	switch {
	case call.FunctionName() == operators.Equals && len(args) == 2:
		for i := range 2 {
			if f, ok := requestField(args[i]); ok {
				if s, ok := stringLiteral(args[1-i]); ok {
					return &celGuard{field: f, values: []string{s}}
				}
			}
		}
	case call.FunctionName() == "startsWith" && call.IsMemberFunction() && len(args) == 1:
		f, ok := requestField(call.Target())
		s, isLit := stringLiteral(args[0])
		if ok && isLit {
			return &celGuard{field: f, prefix: true, values: []string{s}}
		}
	case call.FunctionName() == operators.In && len(args) == 2:
		f, ok := requestField(args[0])
		if !ok || args[1].Kind() != ast.ListKind {
			return nil
		}
		g := &celGuard{field: f}
		list := args[1].AsList()
		for i, el := range list.Elements() {
			s, ok := stringLiteral(el)
			if !ok || list.IsOptional(int32(i)) {
				return nil
			}
			g.values = append(g.values, s)
		}
		return g
	}
	return nil
}

// requestField recognises request.<string field>.
func requestField(e ast.Expr) (reqField, bool) {
	f, ok := anyRequestField(e)
	return f, ok && f < numStringFields
}

func stringLiteral(e ast.Expr) (string, bool) {
	if e.Kind() != ast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

// holds reports whether r meets the guard.
func (g *celGuard) holds(r *Request) bool {
	v := r.str(g.field)
	for _, want := range g.values {
		if v == want || (g.prefix && strings.HasPrefix(v, want)) {
			return true
		}
	}
	return false
}

// describe says in words what the guard needs, for `friendgate test`.
func (g *celGuard) describe() string {
	op := "is one of"
	if g.prefix {
		op = "starts with one of"
	}
	return fmt.Sprintf("request.%s %s %q", celFields[g.field].name, op, g.values)
}
