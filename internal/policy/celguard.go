package policy

import (
	"fmt"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"
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
	// tracked runs with the cost limit; it serves every request fast cannot.
	tracked cel.Program
	// fast is nil when the expression reads the request other than field by field or has
	// no cost bound.
	fast cel.Program
	// guard is the indexable condition of the top-level conjunction, nil when there is none.
	guard *celGuard
}

// compileWhenProgram compiles a `when`; the error is the type checker's.
func compileWhenProgram(expr string) (*whenProgram, error) {
	tracked, checked, err := compileWhen(expr)
	if err != nil {
		return nil, err
	}
	w := &whenProgram{tracked: tracked, guard: findGuard(checked.NativeRep().Expr())}
	env, err := fastCELEnv()
	if err != nil {
		return nil, fmt.Errorf("CEL environment: %w", err)
	}
	fastAST, iss := env.Compile(expr)
	if iss.Err() != nil || !fastAST.OutputType().IsExactType(cel.BoolType) {
		return w, nil
	}
	est, err := env.EstimateCost(fastAST, boundedStrings{})
	if err != nil || est.Max > celCostLimit {
		return w, nil
	}
	if w.fast, err = env.Program(fastAST, cel.EvalOptions(cel.OptOptimize)); err != nil {
		return nil, err
	}
	return w, nil
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

// eval runs the program; an error or a non-bool result means the condition fails.
func (w *whenProgram) eval(act *celActivation, fast bool) (bool, error) {
	if fast && w.fast != nil {
		return boolResult(w.fast.Eval(act))
	}
	return evalWhen(w.tracked, act.r)
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
// request.<field> in ['a', 'b']. An equality is preferred to a prefix; the first wins.
func findGuard(e ast.Expr) *celGuard {
	var best *celGuard
	for _, term := range conjuncts(e, nil) {
		g := guardOf(term)
		if g != nil && (best == nil || (best.prefix && !g.prefix)) {
			best = g
		}
	}
	return best
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
	if e.Kind() != ast.SelectKind {
		return 0, false
	}
	sel := e.AsSelect()
	if sel.IsTestOnly() || sel.Operand().Kind() != ast.IdentKind || sel.Operand().AsIdent() != "request" {
		return 0, false
	}
	f, ok := fieldByName(sel.FieldName())
	return f, ok && f < numStringFields
}

func stringLiteral(e ast.Expr) (string, bool) {
	if e.Kind() != ast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

// describe says in words what the guard needs, for `friendgate test`.
func (g *celGuard) describe() string {
	op := "is one of"
	if g.prefix {
		op = "starts with one of"
	}
	return fmt.Sprintf("request.%s %s %q", celFields[g.field].name, op, g.values)
}
