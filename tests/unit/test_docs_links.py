"""The admin documentation stays true to the tree: its links lead somewhere, its commands exist.

* Every relative link in README.md and docs/*.md names a file or directory of the repository, and an anchor
  (``file.md#section`` or ``#section``) names a heading of that Markdown file, slugged as GitHub slugs headings.
* Every ``slurm-dispatch <command>`` the documents show in code (inline spans and fenced blocks) is a command of
  the typer app, and ``slurm-dispatch config <sub>`` / ``sandbox <sub>`` a subcommand of its group.

Pure file reads and a walk of the click command tree; no command is run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from slurm_dispatch.cli.app import app

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])

FENCE_RE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN_RE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
LINK_RE = re.compile(r"(?<!!)\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
IMAGE_RE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_RE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
HEADING_RE = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
EXTERNAL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, file:, ...
COMMAND_RE = re.compile(
    r"^\s*(?:\$\s+)?(?:sudo\s+(?:-u\s+\S+\s+)?)?(?:\S*/)?slurm-dispatch[ \t]+([a-z][a-z-]*)(?![\w:,'.-])"
    r"(?:[ \t]+([a-z][a-z-]*)(?![\w-]))?"
)
"""A ``slurm-dispatch <word> [<word>]`` command line: at the start of a code line or span, after an optional ``$``
prompt, ``sudo [-u user]`` or a directory (``/opt/slurm-dispatch/bin/slurm-dispatch``, ``ExecStart=/usr/...``).
Output and prose that merely mention the program (``slurm-dispatch file: ...``, ``is another slurm-dispatch
running``) are not commands; nor are ``slurm-dispatch.yml`` or ``/opt/slurm-dispatch/bin/pip``."""


def commands_in(code: str) -> Iterator[tuple[str, str | None]]:
    """Yield ``(command, subcommand or None)`` for each command line in a piece of code (lines, and commands
    chained with ``&&`` or ``;``)."""
    for line in code.splitlines():
        for part in re.split(r"&&|;", line):
            m = COMMAND_RE.match(part)
            if m:
                yield m.group(1), m.group(2)


def without_code(text: str) -> str:
    """Return ``text`` with fenced blocks and inline code spans blanked out (links there are not links)."""
    text = FENCE_RE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return CODE_SPAN_RE.sub("", text)


def code_of(text: str) -> Iterator[str]:
    """Yield the fenced blocks and the inline code spans of a Markdown text."""
    for m in FENCE_RE.finditer(text):
        yield m.group(0)
    for m in CODE_SPAN_RE.finditer(FENCE_RE.sub("", text)):
        yield m.group(2)


def github_slug(heading: str) -> str:
    """Return the anchor GitHub gives a heading: inline markup dropped, lower case, punctuation dropped, spaces
    to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Return every anchor of a Markdown file: its headings' slugs, repeated ones numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for m in HEADING_RE.finditer(FENCE_RE.sub("", path.read_text(encoding="utf-8"))):
        slug = github_slug(m.group(2))
        count = seen.get(slug, 0)
        found.add(slug if count == 0 else f"{slug}-{count}")
        seen[slug] = count + 1
    return found


def relative_links(path: Path) -> list[str]:
    """Return the relative link targets of a Markdown file (links, images and reference definitions)."""
    text = without_code(path.read_text(encoding="utf-8"))
    targets = [m.group(1) for regex in (LINK_RE, IMAGE_RE, REFERENCE_RE) for m in regex.finditer(text)]
    return [t for t in targets if not EXTERNAL_RE.match(t)]


def broken_link(doc: Path, target: str, *, root: Path = REPO) -> str | None:
    """Return why ``target`` (a relative link in ``doc``) leads nowhere inside ``root``, or None when it leads
    somewhere."""
    file_part, _, anchor = target.partition("#")
    dest = (doc.parent / file_part).resolve() if file_part else doc.resolve()
    if not dest.is_relative_to(root):
        return f"{dest} is outside the repository"
    shown = dest.relative_to(root)
    if not dest.exists():
        return f"{shown} does not exist"
    if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
        return f"{shown} has no heading with the anchor #{anchor}"
    return None


def command_tree() -> dict[str, set[str] | None]:
    """Return the app's commands: a group maps to the set of its subcommands, a plain command to None."""
    root = typer.main.get_command(app)
    # typer's groups (TyperGroup) keep their commands in ``commands``; typer >= 0.17 builds them on its own copy
    # of click, so test for the attribute rather than for click.Group.
    commands = getattr(root, "commands", None)
    assert isinstance(commands, dict) and commands, f"{root!r} has no subcommands"
    return {name: set(getattr(cmd, "commands", None) or ()) or None for name, cmd in commands.items()}


def unknown_command(tree: dict[str, set[str] | None], first: str, second: str | None) -> str | None:
    """Return the part of ``slurm-dispatch <first> [<second>]`` that is not a command, or None."""
    if first not in tree:
        return first
    subcommands = tree[first]
    if subcommands is not None and second is not None and second not in subcommands:
        return f"{first} {second}"
    return None


def test_the_documents_are_found() -> None:
    names = {p.name for p in DOCS}
    assert {"README.md", "admin-commands.md", "install.md", "troubleshooting.md"} <= names, names


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_lead_somewhere(doc: Path) -> None:
    problems = [f"({t}): {why}" for t in relative_links(doc) if (why := broken_link(doc, t)) is not None]
    assert problems == [], f"{doc.relative_to(REPO)}: broken links:\n" + "\n".join(problems)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_commands_shown_exist(doc: Path) -> None:
    tree = command_tree()
    unknown = sorted({
        bad
        for code in code_of(doc.read_text(encoding="utf-8"))
        for first, second in commands_in(code)
        if (bad := unknown_command(tree, first, second)) is not None
    })
    assert unknown == [], f"{doc.relative_to(REPO)} shows commands the app does not have: slurm-dispatch " + (
        ", slurm-dispatch ".join(unknown))


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        pytest.param("## 3. The service user", "3-the-service-user", id="number"),
        pytest.param("## slurm-dispatch's own file", "slurm-dispatchs-own-file", id="apostrophe"),
        pytest.param("## `config check`", "config-check", id="code"),
        pytest.param("## `drain` and `resume`", "drain-and-resume", id="two-codes"),
        pytest.param("### What `status` flags", "what-status-flags", id="code-inside"),
    ],
)
def test_github_slug(heading: str, slug: str) -> None:
    assert github_slug(heading.lstrip("#").strip()) == slug


def test_anchors_number_repeated_headings(tmp_path: Path) -> None:
    doc = tmp_path / "d.md"
    doc.write_text("# A\n## Notes\ntext\n```\n## not a heading\n```\n## Notes\n", encoding="utf-8")
    assert anchors(doc) == {"a", "notes", "notes-1"}


def test_broken_links_are_found(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    doc = tmp_path / "docs" / "d.md"
    doc.write_text("## Here\n", encoding="utf-8")
    (tmp_path / "README.md").write_text("# Top\n", encoding="utf-8")
    assert broken_link(doc, "#here", root=tmp_path) is None
    assert broken_link(doc, "../README.md#top", root=tmp_path) is None
    assert broken_link(doc, "#there", root=tmp_path) == "docs/d.md has no heading with the anchor #there"
    assert broken_link(doc, "missing.md", root=tmp_path) == "docs/missing.md does not exist"
    assert broken_link(doc, "../../elsewhere.md", root=tmp_path) == f"{tmp_path.parent / 'elsewhere.md'} is outside the repository"


def test_links_and_commands_in_code_are_told_apart() -> None:
    text = (
        "See [the guide](docs/install.md) and `[not a link](nowhere.md)`.\n"
        "```\n[also not](nowhere.md)\n$ slurm-dispatch config check\nslurm-dispatch file: /etc/x.yml (default)\n"
        "slurm-dispatch settings, from /etc/y.yml:\n# free: slurm-dispatch binds it\n"
        "sudo -u crunch slurm-dispatch status && slurm-dispatch adopt --dry-run\n"
        "ExecStart=/usr/local/bin/slurm-dispatch run --config /etc/arvados/config.yml\n```\n"
        "Run `slurm-dispatch drain --reason x`, not `/opt/slurm-dispatch/bin/pip install`, `slurm-dispatch.yml` or\n"
        "`error: is another slurm-dispatch running`.\n"
    )
    assert [m.group(1) for m in LINK_RE.finditer(without_code(text))] == ["docs/install.md"]
    shown = [found for code in code_of(text) for found in commands_in(code)]
    assert shown == [("config", "check"), ("status", None), ("adopt", None), ("run", None), ("drain", None)]
    tree = command_tree()
    assert unknown_command(tree, "config", "check") is None
    assert unknown_command(tree, "sandbox", "api") is None
    assert unknown_command(tree, "config", "show") == "config show"
    assert unknown_command(tree, "jobs", None) == "jobs"
