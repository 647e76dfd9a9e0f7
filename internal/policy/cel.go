package policy

import (
	"fmt"
	"reflect"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"
)

// celCostLimit bounds one evaluation of a `when` expression. The request's strings are
// bounded by the callback body limit, so this is far above any honest expression and stops
// a hostile one (say, a regex over a repeated string) in microseconds.
const celCostLimit = 100_000

var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		ext.NativeTypes(reflect.TypeFor[Request](), ext.ParseStructTags(true)),
		cel.Variable(celRequest, cel.ObjectType(reflect.TypeFor[Request]().String())),
		ext.Strings(),
	)
})

// celRequest is the variable a `when` reads the request through.
const celRequest = "request"

// checkWhen type-checks a `when` expression against the Request struct; it must yield a
// bool.
func checkWhen(expr string) (*cel.Ast, error) {
	env, err := celEnv()
	if err != nil {
		return nil, fmt.Errorf("CEL environment: %w", err)
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("must evaluate to a bool, not %s", ast.OutputType())
	}
	return ast, nil
}

// trackedWhen plans a checked `when` with the runtime cost limit.
func trackedWhen(checked *cel.Ast) (cel.Program, error) {
	env, err := celEnv()
	if err != nil {
		return nil, fmt.Errorf("CEL environment: %w", err)
	}
	return env.Program(checked, cel.EvalOptions(cel.OptOptimize), cel.CostLimit(celCostLimit))
}

// requestActivation hands the request to CEL without building a map per evaluation.
type requestActivation struct{ r *Request }

func (a requestActivation) ResolveName(name string) (any, bool) {
	if name == celRequest {
		return a.r, true
	}
	return nil, false
}

func (a requestActivation) Parent() interpreter.Activation { return nil }

// evalWhen runs a compiled `when`; an error or a non-bool result means the condition fails.
func evalWhen(prg cel.Program, r *Request) (bool, error) {
	out, _, err := prg.Eval(requestActivation{r})
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("when evaluated to %T, not bool", out.Value())
	}
	return b, nil
}
