package metrics

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// extractKubeProxyMetrics reads kube-proxy's metric definitions out of upstream's
// pkg/proxy/metrics/metrics.go: every package-level variable built by one of its metrics library's
// constructors, and, from RegisterMetrics, the proxy modes that register it. It reads the source
// rather than importing the package, which would pull all of Kubernetes into this module.
func extractKubeProxyMetrics(path string) ([]kubeProxyMetric, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		return nil, err
	}
	consts := stringConsts(f)
	byVar := map[string]*kubeProxyMetric{}
	var register *ast.FuncDecl
	for _, decl := range f.Decls {
		if fn, ok := decl.(*ast.FuncDecl); ok && fn.Name.Name == "RegisterMetrics" {
			register = fn
		}
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.VAR {
			continue
		}
		for _, spec := range gen.Specs {
			vs := spec.(*ast.ValueSpec)
			if len(vs.Names) != 1 || len(vs.Values) != 1 {
				continue
			}
			call, ok := vs.Values[0].(*ast.CallExpr)
			if !ok {
				continue
			}
			m, err := metricOf(call, consts)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", vs.Names[0].Name, err)
			}
			if m != nil {
				byVar[vs.Names[0].Name] = m
			}
		}
	}
	if register == nil {
		return nil, fmt.Errorf("%s: no RegisterMetrics", path)
	}
	if err := addModes(register, byVar); err != nil {
		return nil, err
	}
	var out []kubeProxyMetric
	for _, m := range byVar {
		if len(m.modes) == 0 {
			continue // defined but registered in no mode
		}
		slices.Sort(m.modes)
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b kubeProxyMetric) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// constructorKinds maps the metrics library's constructors to the type of what they build.
// NewDesc describes the metrics of a custom collector; kube-proxy's all emit counters.
var constructorKinds = map[string]string{
	"NewCounter": "counter", "NewCounterVec": "counter",
	"NewGauge": "gauge", "NewGaugeVec": "gauge",
	"NewHistogram": "histogram", "NewHistogramVec": "histogram",
	"NewDesc": "counter",
}

// metricOf reads the metric a constructor call defines, or nil for another call.
func metricOf(call *ast.CallExpr, consts map[string]string) (*kubeProxyMetric, error) {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || identName(sel.X) != "metrics" || constructorKinds[sel.Sel.Name] == "" {
		return nil, nil
	}
	m := &kubeProxyMetric{kind: constructorKinds[sel.Sel.Name]}
	var stability string
	if sel.Sel.Name == "NewDesc" { // (fqName, help, variableLabels, constLabels, stability, deprecatedVersion)
		if len(call.Args) < 5 {
			return nil, fmt.Errorf("NewDesc with %d arguments", len(call.Args))
		}
		m.name, m.help = stringOf(call.Args[0], consts), stringOf(call.Args[1], consts)
		m.labels = stringsOf(call.Args[2], consts)
		stability = selectorName(call.Args[4])
	} else { // (&Opts{...}[, labels])
		var lit *ast.CompositeLit
		if u, ok := call.Args[0].(*ast.UnaryExpr); ok {
			lit, _ = u.X.(*ast.CompositeLit)
		}
		if lit == nil {
			return nil, fmt.Errorf("%s without an options literal", sel.Sel.Name)
		}
		var subsystem, name string
		for _, e := range lit.Elts {
			kv := e.(*ast.KeyValueExpr)
			switch identName(kv.Key) {
			case "Subsystem":
				subsystem = stringOf(kv.Value, consts)
			case "Name":
				name = stringOf(kv.Value, consts)
			case "Help":
				m.help = stringOf(kv.Value, consts)
			case "StabilityLevel":
				stability = selectorName(kv.Value)
			case "Buckets":
				b, err := bucketsOf(kv.Value)
				if err != nil {
					return nil, fmt.Errorf("%s%s: buckets: %w", subsystem, name, err)
				}
				m.buckets = b
			}
		}
		m.name = strings.TrimPrefix(subsystem+"_"+name, "_")
		if len(call.Args) > 1 {
			m.labels = stringsOf(call.Args[1], consts)
		}
	}
	if m.name == "" || m.help == "" || stability == "" {
		return nil, fmt.Errorf("cannot read the name, help or stability of a %s", sel.Sel.Name)
	}
	// The metrics library prints the stability level at the start of the help text.
	m.help = "[" + stability + "] " + m.help
	return m, nil
}

// bucketsOf evaluates a histogram's buckets, written with the metrics library's helpers (the
// same functions as Prometheus' own, but for MergeBuckets, which starts with a 0 bucket).
func bucketsOf(e ast.Expr) ([]float64, error) {
	call, ok := e.(*ast.CallExpr)
	if !ok {
		return nil, fmt.Errorf("not a call of a buckets helper")
	}
	var nums []float64
	if fn := selectorName(call.Fun); fn != "MergeBuckets" {
		for _, a := range call.Args {
			v, err := strconv.ParseFloat(basicNumber(a), 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", fn, err)
			}
			nums = append(nums, v)
		}
		switch {
		case fn == "ExponentialBuckets" && len(nums) == 3:
			return prometheus.ExponentialBuckets(nums[0], nums[1], int(nums[2])), nil
		case fn == "LinearBuckets" && len(nums) == 3:
			return prometheus.LinearBuckets(nums[0], nums[1], int(nums[2])), nil
		}
		return nil, fmt.Errorf("unknown buckets helper %s", fn)
	}
	out := []float64{0}
	for _, a := range call.Args {
		b, err := bucketsOf(a)
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	return out, nil
}

func basicNumber(e ast.Expr) string {
	if b, ok := e.(*ast.BasicLit); ok && (b.Kind == token.INT || b.Kind == token.FLOAT) {
		return b.Value
	}
	return ""
}

// addModes reads RegisterMetrics: the metrics it names outside its switch on the mode are every
// mode's; those named in a case are that mode's. A custom collector counts through the description
// it is built with.
func addModes(register *ast.FuncDecl, byVar map[string]*kubeProxyMetric) error {
	var sw *ast.SwitchStmt
	ast.Inspect(register.Body, func(n ast.Node) bool {
		if s, ok := n.(*ast.SwitchStmt); ok && sw == nil {
			sw = s
			return false
		}
		return true
	})
	if sw == nil {
		return fmt.Errorf("RegisterMetrics has no switch on the proxy mode")
	}
	var modes []string
	for _, stmt := range sw.Body.List {
		cc := stmt.(*ast.CaseClause)
		var caseModes []string
		for _, e := range cc.List {
			mode, ok := strings.CutPrefix(selectorName(e), "ProxyMode")
			if !ok {
				return fmt.Errorf("case %s is not a proxy mode", selectorName(e))
			}
			caseModes = append(caseModes, strings.ToLower(mode))
		}
		modes = append(modes, caseModes...)
		for _, s := range cc.Body {
			for _, v := range namedMetrics(s, byVar) {
				byVar[v].modes = append(byVar[v].modes, caseModes...)
			}
		}
	}
	for _, v := range namedMetrics(register.Body, byVar, sw) {
		byVar[v].modes = append(byVar[v].modes, modes...)
	}
	return nil
}

// namedMetrics lists the metric variables n mentions, once each, outside skip.
func namedMetrics(n ast.Node, byVar map[string]*kubeProxyMetric, skip ...ast.Node) []string {
	var out []string
	ast.Inspect(n, func(n ast.Node) bool {
		if slices.Contains(skip, n) {
			return false
		}
		if id, ok := n.(*ast.Ident); ok && byVar[id.Name] != nil && !slices.Contains(out, id.Name) {
			out = append(out, id.Name)
		}
		return true
	})
	return out
}

// stringConsts maps the file's string constants to their values.
func stringConsts(f *ast.File) map[string]string {
	out := map[string]string{}
	for _, decl := range f.Decls {
		if gen, ok := decl.(*ast.GenDecl); ok && gen.Tok == token.CONST {
			for _, spec := range gen.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, v := range vs.Values {
					if s, err := strconv.Unquote(basicLit(v)); err == nil {
						out[vs.Names[i].Name] = s
					}
				}
			}
		}
	}
	return out
}

func stringOf(e ast.Expr, consts map[string]string) string {
	if id, ok := e.(*ast.Ident); ok {
		return consts[id.Name]
	}
	s, _ := strconv.Unquote(basicLit(e))
	return s
}

// stringsOf reads a []string{...} literal; nil (no labels) gives nil.
func stringsOf(e ast.Expr, consts map[string]string) []string {
	lit, ok := e.(*ast.CompositeLit)
	if !ok {
		return nil
	}
	var out []string
	for _, el := range lit.Elts {
		out = append(out, stringOf(el, consts))
	}
	return out
}

func basicLit(e ast.Expr) string {
	if b, ok := e.(*ast.BasicLit); ok && b.Kind == token.STRING {
		return b.Value
	}
	return ""
}

func identName(e ast.Expr) string {
	if id, ok := e.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

// selectorName is the selected name of x.Name, e.g. ALPHA for metrics.ALPHA.
func selectorName(e ast.Expr) string {
	if sel, ok := e.(*ast.SelectorExpr); ok {
		return sel.Sel.Name
	}
	return ""
}
