"""Surgical edits of YAML files people maintain: set one entry of a top-level mapping, leave every other byte.

`unlearn tune` writes a method's tuned values into a spec's (or an overlay's) `hparams:` section. A YAML
library that loads and dumps the whole document rewraps long lists, moves comments and leaves trailing
spaces; here the entry's own lines are replaced by one new line and the rest of the text is kept as it
was. The result is parsed again and must equal the old document except for that entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from unlearn.errors import UserError
from unlearn.yaml_input import load_document


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _entry_end(lines: list[str], first: int, column: int) -> int:
    """The last line of the entry whose key starts at (`first`, `column`): its continuation lines are indented
    deeper; blank and comment lines after its last continuation line belong to what follows."""
    end = first
    for i in range(first + 1, len(lines)):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            continue
        if _indent(lines[i]) <= column:
            break
        end = i
    return end


def _comment_column(lines: list[str], value: yaml.Node) -> int | None:
    """Where the old entry's end-of-line comment started, if its value ended with one on the same line."""
    line = lines[value.end_mark.line] if value.end_mark.line < len(lines) else ""
    rest = line[value.end_mark.column:]
    if rest.strip().startswith("#"):
        return value.end_mark.column + len(rest) - len(rest.lstrip())
    return None


def render_entry(key: str, values: Mapping[str, Any], indent: int, comment: str, comment_column: int | None) -> str:
    """One line `key: {a: 1, b: 2}  # comment` at `indent` spaces, the comment at `comment_column` when it fits."""
    text = yaml.safe_dump({key: dict(values)}, default_flow_style=None, width=1_000_000, sort_keys=False)
    body = " " * indent + text.rstrip("\n")
    if "\n" in body:  # a scalar PyYAML cannot write on one line: never a number, boolean, null or plain string
        raise UserError(f"cannot write {key}'s values {dict(values)!r} on one line")
    if not comment:
        return body + "\n"
    column = max(comment_column or 0, len(body) + 2)
    return body.ljust(column) + "# " + comment + "\n"


def set_entry(text: str, section: str, key: str, values: Mapping[str, Any], comment: str, where: str) -> str:
    """`text` with `section.key` set to its old values updated by `values`, as one flow-style line.

    Only the lines of that entry change (or one line is added: the entry, or the section and the
    entry at the end of a document without the section); every other byte stays as it was.
    """
    old_doc = load_document(text, where)  # bounded and valid before the node graph is walked
    if not isinstance(old_doc, dict):
        raise UserError(f"{where}: a YAML mapping was expected")
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    lines = text.splitlines(keepends=True)  # the same line breaks as PyYAML's, for a document it could read
    sections = {k.value: (k, v) for k, v in root.value if isinstance(k, yaml.ScalarNode)}
    old_section = old_doc.get(section)
    old_entry = old_section.get(key) if isinstance(old_section, dict) else None
    merged = {**(old_entry if isinstance(old_entry, dict) else {}), **values}
    if section not in sections:
        if lines and not lines[-1].endswith(("\n", "\r")):
            lines[-1] += "\n"
        lines += [f"{section}:\n", render_entry(key, merged, 2, comment, None)]
    else:
        knode, vnode = sections[section]
        if isinstance(vnode, yaml.ScalarNode) and old_section is None:
            entry = render_entry(key, merged, knode.start_mark.column + 2, comment, None)
            if vnode.start_mark.index == vnode.end_mark.index:  # `hparams:` with nothing under it
                lines.insert(knode.start_mark.line + 1, entry)
            else:  # `hparams: null` or `hparams: ~`: that line becomes `hparams:`
                lines[knode.start_mark.line] = " " * knode.start_mark.column + f"{section}:\n" + entry
        elif not isinstance(vnode, yaml.MappingNode) or vnode.flow_style:
            raise UserError(f"{where}: `{section}:` must be a block mapping (one `method: {{...}}` line per entry) "
                            "to be edited in place")
        else:
            entries = {k.value: (k, v) for k, v in vnode.value if isinstance(k, yaml.ScalarNode)}
            if key in entries:
                k, v = entries[key]
                first, column = k.start_mark.line, k.start_mark.column
                end = _entry_end(lines, first, column)
                eol = lines[end][len(lines[end].rstrip("\r\n")):]
                aligned = _comment_column(lines, v) if v.end_mark.line <= end else None
                line = render_entry(key, merged, column, comment, aligned)
                lines[first:end + 1] = [line[:-1] + (eol or "\n")]
            else:
                last_key, last_value = vnode.value[-1]
                end = _entry_end(lines, last_key.start_mark.line, last_key.start_mark.column)
                aligned = _comment_column(lines, last_value) if last_value.end_mark.line <= end else None
                if not lines[end].endswith(("\n", "\r")):
                    lines[end] += "\n"
                lines.insert(end + 1, render_entry(key, merged, last_key.start_mark.column, comment, aligned))
    new_text = "".join(lines)
    new_doc = load_document(new_text, where)
    expected = {**old_doc, section: {**(old_doc.get(section) or {}), key: merged}}
    if new_doc != expected:  # a layout this editor does not follow (a `...` end marker, say)
        raise UserError(f"{where}: cannot set {section}.{key} in place; add `{key}: {dict(merged)}` under "
                        f"`{section}:` by hand")
    return new_text
