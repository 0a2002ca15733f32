"""Check every measured figure in README.md and docs/*.md against the artifact it names.

A figure in the docs is a claim about a file the project commits (a JSON a command wrote, a table a script
rendered). This script makes that claim checkable, so a figure that drifts from its artifact fails the tests
instead of misleading a reader. It imports nothing from aigc_tf and no TensorFlow: it runs in well under a second.

How a figure names its artifact (an HTML comment right after the number, invisible when GitHub renders the page):

    16.9<!-- ref: results/default_run.json#gan.fid -->            a JSON value, dot path (list items by index)
    1.70x<!-- ref: bench/results.json#decode.tokens_per_s.fp32 / bench/results.json#decode.tokens_per_s.keras_hub -->
    81%<!-- ref: bench/results.json#decode.fraction_of_bandwidth.fp32 * 100 -->
    20.2<!-- ref: bench/gan_ablation/results.json#rows.recipe.seeds.*.fid.max() -->  * takes every item; then
                                                                   .min() .max() .mean() (no "|": tables split on it)
    7 min<!-- ref: results/demo_times.json#total / 60 -->
    "setup (venv, install, data)"                                  quote a path part that holds spaces or dots
    99.4%<!-- ref: results/tables.md#"conditional GAN"."label accuracy" -->   a markdown table: row (its first cell
                                                                   starts with it), column (its header starts with
                                                                   it), optionally a third part: which number of
                                                                   the cell (0 first)
    1e-5<!-- ref: tests/system/test_distribute.py:"atol" -->              a text file: a line holding the quoted text also
                                                                   holds the number as written

An expression is operands (a reference or a plain number) joined by + - * /, evaluated left to right.

A whole table can name one table artifact on the line before it: `<!-- table: results/tables.md -->`. Each of
its rows must then be a row of that file (same first cell), and every number in a cell must equal, in order, the
numbers in the artifact's cell under the same column header.

The written number sets the precision: "51.7" matches 51.72 (|value - 51.7| <= 0.05), "52" matches 51.72.

Numbers that look measured (a unit such as s, min, %, x, tokens/s, steps/s, MB, "tests", "passed"; or right after
FID, IS, perplexity, BLEU, ROUGE-L, accuracy; or in a table column headed by one of those) must carry a reference.
The escape for a number that is not a measurement (a constant of a recipe or of the code) is visible: either it
matches one of the few patterns in CONSTANTS below, or it carries `<!-- const: why -->`. Local links must lead to a
file, and a #fragment to a heading of it.

Usage: python bench/check_docs.py [FILE.md ...]   (default: README.md and docs/*.md). Exit status 1 on a problem.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Phrases whose numbers look measured but are settings (each pattern covers the whole phrase it excuses). Anything
# else that is not a measurement carries a visible `<!-- const: why -->` where it stands.
CONSTANTS = [
    r"\d+ MB free",  # the disk-space guard's threshold (AIGC_TF_MIN_FREE_MB)
]

# A minus sign only after a space, a bracket or a cell border: in "16.9-20.2" the dash is a range.
NUMBER = re.compile(r"(?:(?<![^\s(\[|])-)?(?<![\w.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e-?\d+)?"
                    r"(?=x\b|(?![\w]|\.\d))")
# "x" only right after the number: "1.70x" is a ratio, "8 x 256" a shape.
UNIT = re.compile(r"^(?:x\b|\s?(?:%|ms\b|s\b|min\b|h\b|tok/s|tokens/s|steps/s|MB\b|MiB\b|KB\b|GB/s|GB\b|GFLOP/s"
                  r"|tests\b|passed\b))")
METRIC_BEFORE = re.compile(
    r"(?:FID|\bIS|Inception-style score|perplexity|BLEU|ROUGE-L|accuracy|MFU)\s*(?:of|=|:|is|at)?\s*\**$", re.I)
METRIC_HEADER = re.compile(r"FID|score|perplexity|loss|accuracy|seconds|tokens/s|steps/s|pytest|\btime\b|ELBO|eps ",
                           re.I)
COMMENT = re.compile(r"<!--\s*(ref|table|const)\s*:?\s*(.*?)\s*-->")
INLINE_SKIP = re.compile(r"`[^`]*`|\]\([^)]*\)|<!--.*?-->|https?://\S+")
OPERAND = re.compile(r'\s*(?:(?P<op>[-+*/])\s|(?P<num>\d+(?:\.\d+)?)(?:\s|$)|'
                     r'(?P<src>[\w./-]+?\.(?:json|md|py|txt)(?:#(?:"[^"]*"|[^\s"])+|:"[^"]*")))')


class DocError(Exception):
    """A reference that cannot be read: a missing file, path, row or column."""


def parse_number(text):
    """'21,250' -> (21250.0, 0 decimals); '51.7' -> (51.7, 1); '1e-5' -> (1e-05, None: compare exactly)."""
    clean = text.replace(",", "")
    if "e" in clean:
        return float(clean), None
    decimals = len(clean.split(".")[1]) if "." in clean else 0
    return float(clean), decimals


def matches(written, value):
    number, decimals = parse_number(written)
    if decimals is None:
        return math.isclose(number, value, rel_tol=1e-9)
    return abs(value - number) <= 0.5 * 10 ** -decimals * (1 + 1e-9) + 1e-12


def split_path(path):
    return [p[1:-1] if p.startswith('"') else p for p in re.findall(r'"[^"]*"|[^.]+', path)]


def table_cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_tables(text):
    """Every table in a markdown text as (header cells, rows of cells)."""
    tables, lines = [], text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("|") and re.match(r"^\|[\s:|-]+\|?\s*$", lines[i + 1]):
            rows, j = [], i + 2
            while j < len(lines) and lines[j].startswith("|"):
                rows.append(table_cells(lines[j]))
                j += 1
            tables.append((table_cells(line), rows))
    return tables


def mask(text):
    """Blank out inline code, link targets, URLs and comments, keeping every other character where it was.

    A comment becomes '~' rather than spaces, so the dash in `16.9<!-- ... -->-20.2` still reads as a range."""
    return INLINE_SKIP.sub(lambda m: ("~" if m.group().startswith("<!--") else " ") * len(m.group()), text)


def numbers_in(text):
    return [m.group() for m in NUMBER.finditer(mask(text))]


def plain(cell):
    return re.sub(r"[`*]", "", cell).strip()


def json_value(data, parts, where):
    values = [data]
    for part in parts:
        step = []
        for value in values:
            if part == "*":
                step.extend(value.values() if isinstance(value, dict) else value)
            elif isinstance(value, list):
                if not part.lstrip("-").isdigit() or int(part) >= len(value):
                    raise DocError(f"{where}: no item {part}")
                step.append(value[int(part)])
            elif isinstance(value, dict) and part in value:
                step.append(value[part])
            else:
                raise DocError(f"{where}: no key {part!r}")
        values = step
    return values if "*" in parts else values[0]


def resolve(src, cache):
    """The number (or, for a text reference, the numbers) a reference names."""
    if ":" in src and "#" not in src:
        name, snippet = src.split(":", 1)
        text = load(name, cache)
        lines = [line for line in text.splitlines() if snippet.strip('"') in line]
        if not lines:
            raise DocError(f"{name}: no line holds {snippet}")
        return [float(parse_number(n)[0]) for line in lines for n in numbers_in(line)]
    name, path = src.split("#", 1)
    parts = split_path(path)
    agg = parts.pop()[:-2] if parts[-1] in ("min()", "max()", "mean()") else None
    if name.endswith(".json"):
        value = json_value(load(name, cache), parts, name)
    else:
        value = table_value(load(name, cache), parts, name)
    if agg:
        value = [float(v) for v in value]
        value = {"min": min, "max": max, "mean": lambda v: sum(v) / len(v)}[agg](value)
    if isinstance(value, str):
        value = float(value)
    if not isinstance(value, (int, float)):
        raise DocError(f"{src}: not a number ({type(value).__name__})")
    return float(value)


def table_value(text, parts, name):
    row_key, col_key = parts[0], parts[1]
    index = int(parts[2]) if len(parts) > 2 else 0
    for header, rows in markdown_tables(text):
        cols = [i for i, h in enumerate(header) if plain(h).startswith(col_key)]
        for row in rows:
            if cols and plain(row[0]).startswith(row_key):
                found = numbers_in(row[cols[0]])
                if index >= len(found):
                    raise DocError(f"{name}: row {row_key!r} column {col_key!r} has no number {index}")
                return parse_number(found[index])[0]
    raise DocError(f"{name}: no table row {row_key!r} with a column {col_key!r}")


def load(name, cache):
    if name not in cache:
        path = ROOT / name
        if not path.is_file():
            raise DocError(f"no artifact {name}")
        text = path.read_text(encoding="utf-8")
        cache[name] = json.loads(text) if name.endswith(".json") else text
    return cache[name]


def evaluate(expr, cache):
    """Operands joined by + - * /, left to right; a text reference stands alone and gives candidates."""
    tokens, pos = [], 0
    while pos < len(expr.rstrip()):
        m = OPERAND.match(expr, pos)
        if not m or m.end() == pos:
            raise DocError(f"cannot read the reference {expr!r} at {expr[pos:]!r}")
        tokens.append(m)
        pos = m.end()
    if len(tokens) == 1 and tokens[0].group("src") and ":" in tokens[0].group("src").split("#")[0]:
        return resolve(tokens[0].group("src"), cache)
    value, op = None, None
    for t in tokens:
        if t.group("op"):
            op = t.group("op")
            continue
        x = float(t.group("num")) if t.group("num") else resolve(t.group("src"), cache)
        if value is None:
            value = x
        elif op == "+":
            value += x
        elif op == "-":
            value -= x
        elif op == "*":
            value *= x
        elif op == "/":
            value /= x
        else:
            raise DocError(f"two operands without an operator in {expr!r}")
        op = None
    return value


def looks_measured(text, start, end, context=""):
    after, before = text[end:], text[:start]
    if UNIT.match(after) or METRIC_BEFORE.search(before):
        return True
    return bool(context and METRIC_HEADER.search(context))


def is_constant(text, start, end):
    for pattern in CONSTANTS:
        for m in re.finditer(pattern, text):
            if m.start() <= start and end <= m.end():
                return True
    return False


def check_file(path, cache=None):
    """(figures checked, problems) for one markdown file; a problem is 'file:line: message'."""
    cache = {} if cache is None else cache
    rel = path.relative_to(ROOT) if path.is_absolute() and ROOT in path.parents else path
    lines = path.read_text(encoding="utf-8").splitlines()
    problems, checked = [], 0
    fenced, table_ref, header = False, None, None

    def problem(n, message):
        problems.append(f"{rel}:{n}: {message}")

    for n, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        whole = re.fullmatch(r"\s*<!--\s*table:\s*(\S+)\s*-->\s*", line)
        if whole:
            table_ref = whole.group(1)
            continue
        is_row = line.startswith("|")
        if not is_row:
            table_ref, header = None, None
        elif header is None:
            header = table_cells(line)
            continue
        elif re.match(r"^\|[\s:|-]+\|?\s*$", line):
            continue
        cells = table_cells(line) if is_row else [line]
        table_checked = set()
        if is_row and table_ref:
            try:
                row_checked, drifted = check_row(cells, header, table_ref, cache, table_checked)
                checked += row_checked
                for message in drifted:
                    problem(n, message)
            except DocError as e:
                problem(n, str(e))
        for ci, cell in enumerate(cells):
            context = header[ci] if is_row and header and ci < len(header) and ci > 0 else ""
            bound, pos, masked = set(), 0, mask(cell)
            for m in COMMENT.finditer(re.sub(r"`[^`]*`", lambda c: " " * len(c.group()), cell)):  # not in code
                found = list(NUMBER.finditer(masked, pos, m.start()))
                pos = m.end()
                if m.group(1) == "table":
                    continue
                if not found:
                    problem(n, f"a reference with no number before it: {m.group()}")
                    continue
                number = found[-1]
                bound.add(number.start())
                if m.group(1) == "const":
                    continue
                checked += 1
                try:
                    value = evaluate(m.group(2), cache)
                except (DocError, ValueError, ZeroDivisionError, json.JSONDecodeError) as e:
                    problem(n, f"{number.group()}: {e}")
                    continue
                ok = any(matches(number.group(), v) for v in value) if isinstance(value, list) else matches(
                    number.group(), value)
                if not ok:
                    shown = value if isinstance(value, list) else f"{value:.6g}"
                    problem(n, f"{number.group()} drifted from its artifact: {m.group(2)} = {shown}")
            if ci in table_checked:
                continue
            for m in NUMBER.finditer(masked):
                if m.start() in bound or (is_row and ci == 0 and not UNIT.match(masked[m.end():])):
                    continue
                if is_constant(masked, m.start(), m.end()):
                    continue
                if looks_measured(masked, m.start(), m.end(), context):
                    problem(n, f"{m.group()} looks measured but names no artifact (add <!-- ref: ... -->, "
                               f"or <!-- const --> if it is a setting)")
    for n, message in check_links(path, lines):
        problem(n, message)
    return checked, problems


LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def check_links(path, lines):
    """Local links that lead nowhere: a missing file, or a #fragment that is no heading of the page it names."""
    problems, fenced = [], False
    for n, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if fenced:
            continue
        for m in LINK.finditer(re.sub(r"`[^`]*`", "", line)):
            target = m.group(1)
            if re.match(r"[a-z]+:", target):
                continue
            name, _, fragment = target.partition("#")
            page = (path.parent / name).resolve() if name else path
            if not page.exists():
                problems.append((n, f"link to a missing file: {target}"))
            elif fragment and page.suffix == ".md":
                headings = [slug(h) for h in re.findall(r"^#+ (.*)$", page.read_text(encoding="utf-8"), re.M)]
                if fragment not in headings:
                    problems.append((n, f"link to a missing heading: {target}"))
    return problems


def check_row(cells, header, table_ref, cache, table_checked):
    """Compare one row of a doc table with the same row of an artifact table: (numbers checked, drifted cells).

    Marks the cells it covered in table_checked, drifted or not, so they are not reported twice."""
    text = load(table_ref, cache)
    key = plain(COMMENT.sub("", cells[0]))
    for art_header, rows in markdown_tables(text):
        for row in rows:
            if plain(row[0]) != key:
                continue
            checked, drifted = 0, []
            for ci, cell in enumerate(cells[1:], 1):
                if ci >= len(header) or COMMENT.search(cell):
                    continue
                name = plain(header[ci])
                cols = [i for i, h in enumerate(art_header) if plain(h) == name]
                written = numbers_in(cell)
                if not written:
                    table_checked.add(ci)
                    continue
                if not cols:
                    raise DocError(f"{table_ref}: no column {name!r}")
                expected = numbers_in(row[cols[0]])
                if len(expected) != len(written) or not all(
                        matches(w, parse_number(e)[0]) for w, e in zip(written, expected)):
                    drifted.append(f"{key!r} / {name!r}: {cell!r} drifted from {table_ref}'s {row[cols[0]]!r}")
                table_checked.add(ci)
                checked += len(written)
            return checked, drifted
    raise DocError(f"row {key!r} is not in {table_ref}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    files = [Path(a).resolve() for a in argv] or [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    cache, total, problems = {}, 0, []
    for path in files:
        checked, found = check_file(path, cache)
        total += checked
        problems += found
    for p in problems:
        print(p)
    print(f"check_docs: {total} figures checked against their artifacts in {len(files)} files, "
          f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
