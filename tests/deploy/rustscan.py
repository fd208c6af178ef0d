"""A small, deliberately plain reader of this repository's Rust sources for the deploy checks.

Not a Rust parser: it finds `fn` items by brace matching (strings, chars and comments are
blanked first), which is enough for the adapters' and functions' code style. What it finds:

- `sdk_calls(file)`: per function item (`Type.method` inside `impl ... for Type` / `impl Type`,
  or the bare name for free functions), the AWS SDK operations it calls: any method called on
  something named `client` (`client.get_item()`, `.client().publish()`; an unknown name there
  is reported), and any no-argument call of a name in SDK_OPS whatever the receiver, including
  those of the file-local helpers it calls, transitively.
- `source_set(crate_dir)`: the non-test source text of a crate and its workspace path
  dependencies.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Every SDK operation the adapters may call, with its service. A client call not in this table
# fails the adapter test: add it here and declare it in shared/aws/aws-calls.toml.
SDK_OPS = {
    "get_item": "dynamodb", "put_item": "dynamodb", "update_item": "dynamodb",
    "delete_item": "dynamodb", "query": "dynamodb", "scan": "dynamodb",
    "batch_get_item": "dynamodb", "batch_write_item": "dynamodb",
    "transact_write_items": "dynamodb", "transact_get_items": "dynamodb",
    "get_secret_value": "secretsmanager", "put_secret_value": "secretsmanager",
    "describe_secret": "secretsmanager", "update_secret_version_stage": "secretsmanager",
    "create_secret": "secretsmanager", "delete_secret": "secretsmanager",
    "rotate_secret": "secretsmanager", "list_secrets": "secretsmanager",
    "encrypt": "kms", "decrypt": "kms", "re_encrypt": "kms", "generate_data_key": "kms", "describe_key": "kms",
    "publish": "sns",
    "filter_log_events": "logs",
    "invoke": "lambda",
    "get_web_identity_token": "sts", "assume_role_with_web_identity": "sts",
    "get_caller_identity": "sts",
}

# Methods of the SDK's fluent builders/clients that are not operations.
NOT_OPS = {"clone", "config", "send", "as_ref"}


def pascal(op: str) -> str:
    return "".join(w.capitalize() for w in op.split("_"))


def blank_literals(src: str) -> str:
    """Comments, strings and char literals replaced by spaces (same length, same lines)."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', src[i:i + 10]) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            m = re.match(r'r(#*)"', src[i:])
            end = '"' + m.group(1)
            j = src.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            j += 1
            out.append('"' + re.sub(r"[^\n]", " ", src[i + 1:j - 1]) + '"')
            i = j
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", src[i:i + 4]):
            m = re.match(r"'(\\.|[^\\'])'", src[i:])
            out.append(" " * len(m.group(0)))
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def strip_test_modules(src: str) -> str:
    """Source with `#[cfg(test)]` items removed (modules and functions)."""
    clean = blank_literals(src)
    spans = []
    for m in re.finditer(r"#\[cfg\(test\)\]", clean):
        brace = clean.find("{", m.end())
        semi = clean.find(";", m.end())
        if semi >= 0 and (brace < 0 or semi < brace):
            spans.append((m.start(), semi + 1))  # `mod tests;`
            continue
        end = match_brace(clean, brace)
        spans.append((m.start(), end))
    for a, b in reversed(spans):
        src = src[:a] + src[b:]
    return src


def match_brace(clean: str, open_idx: int) -> int:
    depth = 0
    for j in range(open_idx, len(clean)):
        if clean[j] == "{":
            depth += 1
        elif clean[j] == "}":
            depth -= 1
            if depth == 0:
                return j + 1
    return len(clean)


@dataclass
class FnItem:
    name: str  # "Type.method" or "free_fn"
    body: str
    direct_ops: set[str] = field(default_factory=set)
    unknown_calls: set[str] = field(default_factory=set)


IMPL_RE = re.compile(r"\bimpl\b(?:\s*<[^{]*?>)?\s+(?:([\w:]+)(?:<[^{]*?>)?\s+for\s+)?([\w:]+)(?:<[^{]*?>)?\s*(?:where[^{]*)?\{")
FN_RE = re.compile(r"\bfn\s+(\w+)")
ANY_OP_RE = re.compile(r"\.\s*(\w+)\s*\(\s*\)")
CLIENT_CALL_RE = re.compile(r"\bclient(?:\s*\(\s*\))?\s*\.\s*(\w+)\s*\(\s*\)")


def fn_items(path: Path) -> dict[str, FnItem]:
    src = strip_test_modules(path.read_text())
    clean = blank_literals(src)
    impls = []  # (start, end, type)
    for m in IMPL_RE.finditer(clean):
        end = match_brace(clean, m.end() - 1)
        impls.append((m.end(), end, m.group(2).split("::")[-1]))
    items: dict[str, FnItem] = {}
    for m in FN_RE.finditer(clean):
        brace = clean.find("{", m.end())
        semi = clean.find(";", m.end())
        if brace < 0 or (0 <= semi < brace):
            continue  # a declaration without a body
        end = match_brace(clean, brace)
        owner = next((t for a, b, t in impls if a <= m.start() < b), None)
        name = f"{owner}.{m.group(1)}" if owner else m.group(1)
        body = clean[brace:end]
        item = FnItem(name, body)
        for c in CLIENT_CALL_RE.finditer(body):
            op = c.group(1)
            if op in NOT_OPS:
                continue
            if op in SDK_OPS:
                item.direct_ops.add(op)
            else:
                item.unknown_calls.add(op)
        # A known operation started on a client however it is named (`self.sts.publish()`).
        for c in ANY_OP_RE.finditer(body):
            if c.group(1) in SDK_OPS:
                item.direct_ops.add(c.group(1))
        # a nested fn would be counted twice; the adapters have none
        items.setdefault(name, item)
    return items


def sdk_calls(path: Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(ops per fn item including file-local helpers, unknown client calls per fn item)."""
    items = fn_items(path)
    short = {}
    for full in items:
        short.setdefault(full.split(".")[-1], []).append(full)

    def callees(item: FnItem) -> set[str]:
        # `self.m(` / `Self::m(` / `store.m(` reach methods of the same file; a bare `f(`
        # reaches a free function. Other `.m(` calls (HashMap::get, ...) are not followed.
        out = set()
        owner = item.name.split(".")[0] if "." in item.name else None
        for m in re.finditer(r"(\bself\s*\.\s*|\bSelf\s*::\s*|\bstore\s*\.\s*|(?<![.:\w]))(\w+)\s*\(", item.body):
            name = m.group(2)
            for full in short.get(name, []):
                if full == item.name:
                    continue
                is_method = "." in full
                if m.group(1) and is_method and (owner is None or full.startswith(owner + ".") or m.group(1).startswith("store")):
                    out.add(full)
                elif not m.group(1) and not is_method:
                    out.add(full)
        return out

    graph = {n: callees(i) for n, i in items.items()}
    result = {}
    for n in items:
        seen, stack, ops = set(), [n], set()
        while stack:
            x = stack.pop()
            if x in seen:
                continue
            seen.add(x)
            ops |= items[x].direct_ops
            stack.extend(graph[x])
        result[n] = ops
    return result, {n: i.unknown_calls for n, i in items.items() if i.unknown_calls}


def workspace_deps(crate_dir: Path) -> list[Path]:
    """The crate and its workspace path dependencies (normal dependencies only), transitively."""
    ws = tomllib.loads((ROOT / "Cargo.toml").read_text())
    ws_paths = {k: ROOT / v["path"] for k, v in ws["workspace"]["dependencies"].items()
                if isinstance(v, dict) and "path" in v}
    seen: list[Path] = []
    stack = [crate_dir]
    while stack:
        d = stack.pop()
        if d in seen:
            continue
        seen.append(d)
        manifest = tomllib.loads((d / "Cargo.toml").read_text())
        for name, spec in manifest.get("dependencies", {}).items():
            if isinstance(spec, dict) and spec.get("workspace") and name in ws_paths:
                stack.append(ws_paths[name])
            elif isinstance(spec, dict) and "path" in spec:
                stack.append((d / spec["path"]).resolve())
    return seen


def source_files(crate_dir: Path) -> list[Path]:
    """A crate's src/**/*.rs without test-only files (tests.rs, */tests/*)."""
    return [p for p in sorted((crate_dir / "src").rglob("*.rs"))
            if p.name != "tests.rs" and "tests" not in p.relative_to(crate_dir / "src").parts[:-1]]


def source_text(crate_dirs: list[Path]) -> str:
    return "\n".join(strip_test_modules(p.read_text()) for d in crate_dirs for p in source_files(d))
