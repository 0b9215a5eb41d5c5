// Command check-deps lists the words of the tree that may name a program it runs, for
// hack/check-deps.sh. In Go files: every string literal that is one bare word (the shape of
// exec.Command's and an argv slice's program names), import paths excepted, and, marked with a
// leading "!", the first argument of every exec.Command, exec.CommandContext and exec.LookPath call,
// which must be a program. In shell scripts, Makefiles and manifests: the word in command position of
// every simple command (first on a line or after | ; && || $( ( ` and keywords), not the words of
// messages and YAML keys.
package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

var bareWord = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)

func main() {
	words := map[string]bool{}
	fset := token.NewFileSet()
	for _, path := range os.Args[1:] {
		if !strings.HasSuffix(path, ".go") {
			if err := shellCommands(path, words); err != nil {
				fmt.Fprintln(os.Stderr, "check-deps:", err)
				os.Exit(1)
			}
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			fmt.Fprintln(os.Stderr, "check-deps:", err)
			os.Exit(1)
		}
		imports := map[*ast.BasicLit]bool{}
		for _, imp := range f.Imports {
			imports[imp.Path] = true
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BasicLit:
				if s, ok := literal(n); ok && !imports[n] && bareWord.MatchString(s) {
					words[s] = true
				}
			case *ast.CallExpr:
				if name, ok := execProgram(n); ok {
					words["!"+name] = true
				}
			}
			return true
		})
	}
	out := make([]string, 0, len(words))
	for w := range words {
		out = append(out, w)
	}
	sort.Strings(out)
	for _, w := range out {
		fmt.Println(w)
	}
}

func literal(n ast.Expr) (string, bool) {
	lit, ok := n.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// execProgram returns the program named by exec.Command("x", ...), exec.CommandContext(ctx, "x", ...)
// or exec.LookPath("x").
func execProgram(call *ast.CallExpr) (string, bool) {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return "", false
	}
	if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "exec" {
		return "", false
	}
	arg := 0
	switch sel.Sel.Name {
	case "Command", "LookPath":
	case "CommandContext":
		arg = 1
	default:
		return "", false
	}
	if len(call.Args) <= arg {
		return "", false
	}
	return literal(call.Args[arg])
}

// commandStart splits a line where a new simple command may start.
var commandStart = regexp.MustCompile("\\||;|&|\\$\\(|\\(|`|\\bthen\\b|\\bdo\\b|\\belse\\b|\\{")

// prefixWords come before the program in a command: keywords and wrappers whose next word is the program.
var prefixWords = map[string]bool{"if": true, "while": true, "until": true, "!": true, "exec": true,
	"command": true, "xargs": true, "env": true, "nohup": true, "setsid": true, "-r": true,
	"fi": true, "done": true, "esac": true}

// shellCommands adds the program of every simple command in a shell script (or a Makefile recipe, or
// a script inside a manifest) to words. Comments are dropped; quoted text is not a command.
func shellCommands(path string, words map[string]bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(data), "\n") {
		line = stripQuotedAndComment(line)
		for _, part := range commandStart.Split(line, -1) {
			for _, f := range strings.Fields(part) {
				if prefixWords[f] || strings.Contains(f, "=") {
					continue // a wrapper, or an assignment before the command
				}
				if bareWord.MatchString(f) {
					words[f] = true
				}
				break
			}
		}
	}
	return nil
}

// stripQuotedAndComment blanks out single- and double-quoted text (messages, not commands) and
// drops a trailing # comment.
func stripQuotedAndComment(line string) string {
	var b strings.Builder
	var quote rune
	for i, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
			continue
		case r == '\'' || r == '"':
			quote = r
			b.WriteString(" Q ")
			continue
		case r == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return b.String()
		}
		b.WriteRune(r)
	}
	return b.String()
}
