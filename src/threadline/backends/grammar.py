"""A custom tool's grammar (Lark or a regular expression) as GBNF, llama.cpp's grammar format.

Only what both say the same way is converted: literals, concatenation, alternation,
grouping, `?`, `*`, `+`, counted repetition, character classes, rule and terminal
references, and regular expressions built of those. The rest (lookaround, backreferences,
word boundaries, Lark's `%ignore` and templates, ...) raises `GrammarError`, which names what
could not be said; the caller then goes without the constraint.

Lark reads its input with a lexer, so a terminal's priority or a longest match can reject
text that the rules alone allow. GBNF has no lexer: the grammar here allows what the rules
allow, which is all a model needs to be held to.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

MAX_CODEPOINT = 0x10FFFF
DIGITS = [(ord("0"), ord("9"))]
WORD = [(ord("0"), ord("9")), (ord("A"), ord("Z")), (ord("_"), ord("_")), (ord("a"), ord("z"))]
SPACE = [(ord("\t"), ord("\r")), (ord(" "), ord(" "))]  # \t \n \v \f \r and space
CLASS_ESCAPES = {"d": DIGITS, "w": WORD, "s": SPACE}
CHAR_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "0": "\0", "a": "\a", "e": "\x1b"}


class GrammarError(ValueError):
    """The grammar uses something GBNF cannot say (or is not a grammar at all)."""


def custom_tool_gbnf(tool_format: dict | None) -> str | None:
    """The GBNF for a custom tool's `format`: None for free text; raises GrammarError."""
    if not tool_format or tool_format.get("type") != "grammar":
        return None
    syntax, definition = tool_format.get("syntax"), tool_format.get("definition") or ""
    if syntax == "regex":
        return regex_to_gbnf(definition)
    if syntax == "lark":
        return lark_to_gbnf(definition)
    raise GrammarError(f"Grammars of syntax '{syntax}' cannot be converted.")


def regex_to_gbnf(pattern: str) -> str:
    """A GBNF grammar whose `root` matches the whole text the regular expression matches."""
    return f"root ::= {RegexParser(pattern, anchored=True).parse()}\n"


# --- GBNF pieces ------------------------------------------------------------------------


def gbnf_literal(text: str) -> str:
    if not text:
        return '""'
    return '"' + "".join(literal_char(char) for char in text) + '"'


def literal_char(char: str) -> str:
    if char in '"\\':
        return "\\" + char
    if char.isprintable() and char not in "\u2028\u2029":
        return char
    return code_escape(ord(char))


def code_escape(code: int) -> str:
    if code <= 0xFF:
        return f"\\x{code:02X}"
    if code <= 0xFFFF:
        return f"\\u{code:04X}"
    return f"\\U{code:08X}"


def class_char(code: int) -> str:
    char = chr(code)
    return char if char.isascii() and char.isalnum() else code_escape(code)


def gbnf_class(ranges: list[tuple[int, int]]) -> str:
    ranges = normalized(ranges)
    if not ranges:
        raise GrammarError("A character class that matches no character cannot be converted.")
    # The complement is shorter to say when a class excludes a few characters (`.`, `[^"]`).
    negated = complement(ranges)
    if negated and len(negated) < len(ranges):
        return "[^" + "".join(class_range(low, high) for low, high in negated) + "]"
    return "[" + "".join(class_range(low, high) for low, high in ranges) + "]"


def class_range(low: int, high: int) -> str:
    return class_char(low) if low == high else f"{class_char(low)}-{class_char(high)}"


def normalized(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
        else:
            merged.append((low, high))
    return merged


def complement(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    result, start = [], 0
    for low, high in normalized(ranges):
        if low > start:
            result.append((start, low - 1))
        start = high + 1
    if start <= MAX_CODEPOINT:
        result.append((start, MAX_CODEPOINT))
    return result


def either_case(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The ranges with the other case of their ASCII letters added."""
    extra = []
    for low, high in ranges:
        for first, last, shift in ((ord("a"), ord("z"), -32), (ord("A"), ord("Z"), 32)):
            start, end = max(low, first), min(high, last)
            if start <= end:
                extra.append((start + shift, end + shift))
    return ranges + extra


def repeat(atom: str, low: int, high: int | None) -> str:
    if (low, high) == (0, None):
        return f"{atom}*"
    if (low, high) == (1, None):
        return f"{atom}+"
    if (low, high) == (0, 1):
        return f"{atom}?"
    if high is None:
        return f"{atom}{{{low},}}"
    if low == high:
        return f"{atom}{{{low}}}"
    return f"{atom}{{{low},{high}}}"


def alternatives(options: list[str]) -> str:
    return options[0] if len(options) == 1 else "(" + " | ".join(options) + ")"


LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')


def sequence(items: list[str]) -> str:
    merged: list[str] = []
    for item in items:
        if item == '""':
            continue
        if merged and LITERAL.fullmatch(item) and LITERAL.fullmatch(merged[-1]):
            merged[-1] = merged[-1][:-1] + item[1:]  # "ab" "c" is "abc"
        else:
            merged.append(item)
    items = merged
    if not items:
        return '""'
    return items[0] if len(items) == 1 else "(" + " ".join(items) + ")"


# --- Regular expressions ------------------------------------------------------------------


class RegexParser:
    """A regular expression (Python's and Rust's common syntax) as one GBNF expression."""

    def __init__(self, pattern: str, *, anchored: bool = False, ignore_case: bool = False, dot_all: bool = False) -> None:
        self.pattern = pattern
        self.position = 0
        self.anchored = anchored  # a whole-text pattern: ^ and $ at its ends say nothing more
        self.ignore_case = ignore_case
        self.dot_all = dot_all

    def fail(self, what: str) -> GrammarError:
        return GrammarError(f"The regular expression /{self.pattern}/ uses {what} (at {self.position}), which cannot be converted.")

    def parse(self) -> str:
        expression = self.alternation(depth=0)
        if self.position < len(self.pattern):
            raise self.fail(f"an unmatched '{self.pattern[self.position]}'")
        return expression

    def peek(self) -> str | None:
        return self.pattern[self.position] if self.position < len(self.pattern) else None

    def alternation(self, depth: int) -> str:
        options = [self.sequence(depth)]
        while self.peek() == "|":
            self.position += 1
            options.append(self.sequence(depth))
        return alternatives(options)

    def sequence(self, depth: int) -> str:
        items: list[str] = []
        while self.peek() not in (None, "|", ")"):
            char = self.peek()
            if char == "^" and self.anchored and depth == 0 and not items:
                self.position += 1
                continue
            if char == "$" and self.anchored and depth == 0 and self.pattern[self.position + 1 : self.position + 2] in ("", "|"):
                self.position += 1
                continue
            items.append(self.quantified(self.atom(depth)))
        return sequence(items)

    def quantified(self, atom: str) -> str:
        while True:
            char = self.peek()
            if char in ("*", "+", "?"):
                self.position += 1
                low, high = {"*": (0, None), "+": (1, None), "?": (0, 1)}[char]
            elif char == "{" and (counted := re.match(r"\{(\d+)(,(\d*))?\}", self.pattern[self.position :])):
                self.position += counted.end()
                low = int(counted.group(1))
                high = low if counted.group(2) is None else (int(counted.group(3)) if counted.group(3) else None)
                if high is not None and high < low:
                    raise self.fail("a repetition whose maximum is below its minimum")
            else:
                return atom
            if self.peek() == "?":  # lazy: matches the same texts
                self.position += 1
            elif self.peek() == "+":
                raise self.fail("a possessive quantifier")
            atom = repeat(atom if atom.startswith(("(", "[", '"')) and balanced(atom) else f"({atom})", low, high)

    def atom(self, depth: int) -> str:
        char = self.pattern[self.position]
        self.position += 1
        if char == "(":
            if self.pattern.startswith("?:", self.position):
                self.position += 2
            elif self.pattern.startswith(("?P<", "?<"), self.position) and not self.pattern.startswith(("?<=", "?<!"), self.position):
                self.position = self.pattern.index(">", self.position) + 1
            elif self.peek() == "?":
                raise self.fail("a group of kind '(?" + (self.pattern[self.position + 1 : self.position + 2]) + "'")
            inner = self.alternation(depth + 1)
            if self.peek() != ")":
                raise self.fail("an unclosed group")
            self.position += 1
            return f"({inner})" if not inner.startswith("(") or not balanced(inner) else inner
        if char == "[":
            return gbnf_class(self.char_class())
        if char == ".":
            return gbnf_class([(0, MAX_CODEPOINT)] if self.dot_all else complement([(10, 10)]))
        if char == "\\":
            return self.escape()
        if char in "*+?":
            raise self.fail(f"a quantifier '{char}' with nothing before it")
        if char in "^$":
            raise self.fail(f"an anchor '{char}' inside the pattern")
        return self.literal(char)

    def literal(self, char: str) -> str:
        if self.ignore_case and char.isascii() and char.isalpha():
            return gbnf_class(either_case([(ord(char), ord(char))]))
        return gbnf_literal(char)

    def escape(self) -> str:
        ranges, char = self.escaped(in_class=False)
        if ranges is not None:
            return gbnf_class(either_case(ranges) if self.ignore_case else ranges)
        return self.literal(char)

    def escaped(self, in_class: bool) -> tuple[list[tuple[int, int]] | None, str]:
        """What follows a backslash: a class's ranges, or one character."""
        if self.position >= len(self.pattern):
            raise self.fail("a trailing backslash")
        char = self.pattern[self.position]
        self.position += 1
        if char.lower() in CLASS_ESCAPES:
            ranges = CLASS_ESCAPES[char.lower()]
            return (complement(ranges) if char.isupper() else list(ranges)), ""
        if char in CHAR_ESCAPES:
            return None, CHAR_ESCAPES[char]
        if char in "xuU":
            digits = {"x": 2, "u": 4, "U": 8}[char]
            if self.pattern.startswith("{", self.position):  # \x{...}, Rust's form
                end = self.pattern.index("}", self.position)
                code, self.position = self.pattern[self.position + 1 : end], end + 1
            else:
                code = self.pattern[self.position : self.position + digits]
                self.position += digits
            try:
                return None, chr(int(code, 16))
            except ValueError:
                raise self.fail(f"a malformed escape '\\{char}{code}'") from None
        if char == "b" and in_class:
            return None, "\b"
        if char.isalnum():
            raise self.fail(f"the escape '\\{char}'")
        return None, char

    def char_class(self) -> list[tuple[int, int]]:
        negated = self.peek() == "^"
        if negated:
            self.position += 1
        ranges: list[tuple[int, int]] = []
        first = True
        while True:
            if self.position >= len(self.pattern):
                raise self.fail("an unclosed character class")
            char = self.pattern[self.position]
            if char == "]" and not first:
                self.position += 1
                break
            first = False
            if self.pattern.startswith("[:", self.position) or self.pattern.startswith(("&&", "--", "~~"), self.position):
                raise self.fail("a set operation or POSIX class in a character class")
            low = self.class_member()
            if isinstance(low, list):
                ranges += low
                continue
            if self.peek() == "-" and self.pattern[self.position + 1 : self.position + 2] not in ("]", ""):
                self.position += 1
                high = self.class_member()
                if isinstance(high, list) or high < low:
                    raise self.fail("a malformed range in a character class")
                ranges.append((low, high))
            else:
                ranges.append((low, low))
        if self.ignore_case:
            ranges = either_case(ranges)
        return complement(ranges) if negated else ranges

    def class_member(self) -> int | list[tuple[int, int]]:
        char = self.pattern[self.position]
        self.position += 1
        if char != "\\":
            return ord(char)
        ranges, escaped = self.escaped(in_class=True)
        return ranges if ranges is not None else ord(escaped)


def balanced(expression: str) -> bool:
    """Whether an expression that starts with a bracket or quote is that one unit, so a
    quantifier may follow it as it is."""
    if expression[0] == '"':
        return LITERAL.fullmatch(expression) is not None
    if expression[0] == "[":
        return re.fullmatch(r"\[(?:[^\]\\]|\\.)*\]", expression) is not None
    depth = 0
    in_string = in_class = escaped = False
    for position, char in enumerate(expression):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_string:
            in_string = char != '"'
        elif in_class:
            in_class = char != "]"
        elif char == '"':
            in_string = True
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0 and position != len(expression) - 1:
                return False
    return depth == 0


# --- Lark ---------------------------------------------------------------------------------

LARK_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\f\r]+|\\\n)
  | (?P<newline>\n)
  | (?P<comment>//[^\n]*)
  | (?P<directive>%[a-z]+)
  | (?P<string>"(?:[^"\\\n]|\\.)*"i?)
  | (?P<regexp>/(?:[^/\\\n]|\\.)+/[imslux]*)
  | (?P<arrow>->)
  | (?P<range>\.\.)
  | (?P<name>[?!]?[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<number>-?\d+)
  | (?P<op>[:|()\[\]?*+~,{}.])
    """,
    re.VERBOSE,
)

# Lark's `common` terminals that grammars import, said in the subset converted here.
COMMON = r"""
DIGIT: "0".."9"
HEXDIGIT: "a".."f" | "A".."F" | DIGIT
INT: DIGIT+
SIGNED_INT: ["+" | "-"] INT
DECIMAL: INT "." INT? | "." INT
_EXP: ("e" | "E") SIGNED_INT
FLOAT: INT _EXP | DECIMAL _EXP?
SIGNED_FLOAT: ["+" | "-"] FLOAT
NUMBER: FLOAT | INT
SIGNED_NUMBER: ["+" | "-"] NUMBER
ESCAPED_STRING: "\"" (/[^"\\\n]/ | "\\" /./)* "\""
LCASE_LETTER: "a".."z"
UCASE_LETTER: "A".."Z"
LETTER: UCASE_LETTER | LCASE_LETTER
WORD: LETTER+
CNAME: ("_" | LETTER) ("_" | LETTER | DIGIT)*
WS_INLINE: (" " | /\t/)+
WS: /[ \t\f\r\n]/+
CR: /\r/
LF: /\n/
NEWLINE: (CR? LF)+
"""


@dataclass
class Token:
    kind: str
    text: str


def lark_to_gbnf(definition: str) -> str:
    """A GBNF grammar whose `root` matches what the Lark grammar's `start` rule matches."""
    grammar = LarkGrammar(definition)
    if "start" not in grammar.rules:
        raise GrammarError("The Lark grammar has no 'start' rule.")
    return grammar.gbnf("start")


class LarkGrammar:
    """A Lark grammar's definitions, each already a GBNF expression, by Lark name."""

    def __init__(self, definition: str, *, prefix: str = "") -> None:
        self.prefix = prefix  # the common terminals get one, so they never meet a user's names
        self.rules: dict[str, str] = {}
        self.references: dict[str, set[str]] = {}
        self.imports: dict[str, str] = {}  # name -> the common terminal it stands for
        for statement in statements(tokenize(definition)):
            self.statement(statement)

    def statement(self, tokens: list[Token]) -> None:
        head = tokens[0]
        if head.kind == "directive":
            self.directive(head.text, tokens[1:])
            return
        if head.kind != "name":
            raise GrammarError(f"The Lark grammar has a line that starts with '{head.text}', which is not a definition.")
        name = head.text.lstrip("?!")
        rest = tokens[1:]
        if rest and rest[0].text == "{":
            raise GrammarError(f"The Lark grammar's template '{name}' cannot be converted.")
        if rest and rest[0].text == ".":  # a priority, which only the lexer heeds
            rest = rest[2:]
        if not rest or rest[0].text != ":":
            raise GrammarError(f"The Lark grammar's definition of '{name}' has no ':'.")
        if name in self.rules:
            raise GrammarError(f"The Lark grammar defines '{name}' twice.")
        parser = ExpansionParser(rest[1:], self)
        self.rules[name] = parser.parse()
        self.references[name] = parser.references

    def directive(self, directive: str, tokens: list[Token]) -> None:
        if directive != "%import":
            raise GrammarError(f"The Lark grammar's '{directive}' cannot be converted.")
        words = [token.text for token in tokens if token.text not in ("(", ")", ",")]
        if not words or not words[0].startswith("common"):
            raise GrammarError(f"The Lark grammar imports '{' '.join(words)}'; only terminals of 'common' can be converted.")
        module = words[0]
        if module.startswith("common."):  # %import common.NAME [-> ALIAS]
            name = module.removeprefix("common.")
            alias = words[2] if len(words) == 3 and words[1] == "->" else name
            self.imports[alias] = name
        else:  # %import common (A, B)
            for name in words[1:]:
                self.imports[name] = name

    def gbnf(self, start: str) -> str:
        common = LarkGrammar(COMMON, prefix="common-")
        lines = [f"root ::= {self.rule_name(start)}"]
        done: set[str] = set()
        pending = [(self, start)]
        while pending:
            grammar, name = pending.pop()
            key = grammar.rule_name(name)
            if key in done:
                continue
            done.add(key)
            if name in grammar.rules:
                lines.append(f"{key} ::= {grammar.rules[name]}")
                pending += [(grammar, reference) for reference in grammar.references[name]]
            elif name in grammar.imports and grammar.imports[name] in common.rules:
                target = grammar.imports[name]
                lines.append(f"{key} ::= {common.rule_name(target)}")
                pending.append((common, target))
            elif name in grammar.imports:
                raise GrammarError(f"The Lark grammar imports common.{grammar.imports[name]}, which cannot be converted.")
            else:
                raise GrammarError(f"The Lark grammar uses '{name}' but does not define it.")
        return "\n".join(lines) + "\n"

    def rule_name(self, name: str) -> str:
        # GBNF names are letters, digits and dashes; "g-" keeps them apart from `root`.
        return f"{self.prefix or 'g-'}{name.replace('_', '-')}"


def tokenize(definition: str) -> list[Token]:
    tokens, position = [], 0
    while position < len(definition):
        match = LARK_TOKEN.match(definition, position)
        if match is None:
            raise GrammarError(f"The Lark grammar cannot be read at '{definition[position:position + 20]}'.")
        position = match.end()
        if match.lastgroup not in ("space", "comment"):
            tokens.append(Token(match.lastgroup, match.group()))
    return tokens


def statements(tokens: list[Token]) -> list[list[Token]]:
    """Tokens by definition: a line that starts with `|`, or that is inside brackets, goes on
    the definition before it."""
    found: list[list[Token]] = []
    depth = 0
    line_start = True
    for token in tokens:
        if token.kind == "newline":
            line_start = True
            continue
        if line_start and depth == 0 and token.text != "|" or not found:
            found.append([])
        line_start = False
        if token.text in "([":
            depth += 1
        elif token.text in ")]":
            depth -= 1
        found[-1].append(token)
    return found


class ExpansionParser:
    """The right side of one Lark definition as a GBNF expression."""

    def __init__(self, tokens: list[Token], grammar: LarkGrammar) -> None:
        self.tokens = tokens
        self.position = 0
        self.grammar = grammar
        self.references: set[str] = set()

    def peek(self) -> Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> Token:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def parse(self) -> str:
        expression = self.expansions()
        if self.peek() is not None:
            raise GrammarError(f"The Lark grammar has an unexpected '{self.peek().text}'.")
        return expression

    def expansions(self) -> str:
        options = [self.alias()]
        while self.peek() is not None and self.peek().text == "|":
            self.take()
            options.append(self.alias())
        return alternatives(options)

    def alias(self) -> str:
        items = []
        while self.peek() is not None and self.peek().text not in ("|", ")", "]", "->"):
            items.append(self.expression())
        if self.peek() is not None and self.peek().text == "->":  # names the tree node only
            self.take()
            self.take()
        return sequence(items)

    def expression(self) -> str:
        atom = self.atom()
        token = self.peek()
        if token is None:
            return atom
        if token.text in ("?", "*", "+"):
            self.take()
            return repeat(atom, *{"*": (0, None), "+": (1, None), "?": (0, 1)}[token.text])
        if token.text == "~":
            self.take()
            low = int(self.take().text)
            high = low
            if self.peek() is not None and self.peek().kind == "range":
                self.take()
                high = int(self.take().text)
            return repeat(atom, low, high)
        return atom

    def atom(self) -> str:
        token = self.take()
        if token.text in ("(", "["):
            inner = self.expansions()
            closing = ")" if token.text == "(" else "]"
            if self.peek() is None or self.peek().text != closing:
                raise GrammarError(f"The Lark grammar has an unclosed '{token.text}'.")
            self.take()
            inner = inner if inner.startswith("(") and balanced(inner) else f"({inner})"
            return inner if closing == ")" else f"{inner}?"
        if token.kind == "string":
            if self.peek() is not None and self.peek().kind == "range":
                self.take()
                low, high = string_value(token.text), string_value(self.take().text)
                if len(low) != 1 or len(high) != 1:
                    raise GrammarError(f"The Lark grammar's range {token.text}..{high!r} is not between single characters.")
                return gbnf_class([(ord(low), ord(high))])
            text = string_value(token.text)
            if token.text.endswith("i"):
                return sequence([RegexParser(re.escape(text), ignore_case=True).parse()])
            return gbnf_literal(text)
        if token.kind == "regexp":
            body, _, flags = token.text[1:].rpartition("/")
            unsupported = set(flags) - {"i", "s"}
            if unsupported:
                raise GrammarError(f"The Lark grammar's regular expression {token.text} has flags {''.join(sorted(unsupported))}, which cannot be converted.")
            return RegexParser(body.replace("\\/", "/"), ignore_case="i" in flags, dot_all="s" in flags).parse()
        if token.kind == "name":
            if self.peek() is not None and self.peek().text == "{":
                raise GrammarError(f"The Lark grammar's template '{token.text}' cannot be converted.")
            self.references.add(token.text)
            return self.grammar.rule_name(token.text)
        raise GrammarError(f"The Lark grammar has an unexpected '{token.text}'.")


def string_value(literal: str) -> str:
    try:
        return ast.literal_eval(literal.removesuffix("i"))
    except (ValueError, SyntaxError):
        raise GrammarError(f"The Lark grammar's string {literal} cannot be read.") from None
