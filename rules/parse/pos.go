package parse

import (
	"strings"

	"gopkg.in/yaml.v3"
)

// Expr is a CEL expression with where it sits in its file.
type Expr struct {
	Text string
	// Node is the scalar holding the expression.
	Node *yaml.Node
	File *File
}

// Pos is where the expression starts.
func (e Expr) Pos() (line, col int) { return e.Node.Line, e.Node.Column }

// Offset is the byte offset in the text of a position inside it, given as
// CEL gives locations: line from 1, column from 0.
func (e Expr) Offset(line, col int) int {
	off := 0
	for i := 1; i < line; i++ {
		nl := strings.IndexByte(e.Text[off:], '\n')
		if nl < 0 {
			break
		}
		off += nl + 1
	}
	return off + col
}

// At maps a position inside the expression (line from 1, column from 0;
// line 0 for none) back to the rule file. Block scalars (| and >) start on
// the line after their key and lose their indentation, and folded ones
// also join lines, so the position is found by walking the raw lines of
// the file.
func (e Expr) At(line, col int) (int, int) {
	n := e.Node
	if line < 1 {
		return n.Line, n.Column
	}
	off := e.Offset(line, col)
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		return blockPos(e.File.lines, n, off)
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		if !strings.Contains(e.Text, "\n") {
			return n.Line, n.Column + 1 + off
		}
	default:
		if !strings.Contains(e.Text, "\n") {
			return n.Line, n.Column + off
		}
	}
	// Multi-line flow scalars: the line is right, the column close.
	return n.Line + line - 1, col + 1
}

func blockPos(lines []string, n *yaml.Node, off int) (int, int) {
	indent := -1
	pos := 0
	lastLine, lastEnd := n.Line, n.Column
	for i := n.Line; i < len(lines); i++ { // lines[n.Line] is the line after the key
		raw := strings.TrimRight(lines[i], "\r")
		body := strings.TrimLeft(raw, " ")
		if body == "" {
			continue
		}
		ind := len(raw) - len(body)
		if indent < 0 {
			indent = ind
		} else if ind < indent {
			break
		}
		content := raw[indent:]
		if off <= pos+len(content) {
			return i + 1, indent + (off - pos) + 1
		}
		pos += len(content) + 1
		lastLine, lastEnd = i+1, len(raw)+1
	}
	// Past the end: CEL reports a missing operand at the end of input.
	return lastLine, lastEnd
}

// ExprIn is the expression held by scalar n of a YAML file that is not a
// rule file (data is the file's text, name its name), so that At places
// positions inside it in that file as it does in rule files.
func ExprIn(name string, data []byte, n *yaml.Node) Expr {
	return Expr{Text: n.Value, Node: n, File: &File{Name: name, lines: strings.Split(string(data), "\n")}}
}
