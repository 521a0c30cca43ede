"""RESULTS.md holds each benchmark's latest run: a new run replaces its section, and the section it
replaces moves to the top of ``history/<section>.md``."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"


def slug(heading: str) -> str:
    """The heading as a file name (and, with dashes for spaces, as GitHub's anchor)."""
    return re.sub(r"[^a-z0-9 -]", "", heading.lower()).strip().replace(" ", "-")


def record(heading: str, report: str, results: Path = RESULTS) -> None:
    """Make ``report`` the section ``## heading`` of ``results``: its first line, if a heading (which
    names the run, its scope and date), becomes the section's first line, "Latest run: ...", under
    ``## heading``, so the page's anchors hold; an existing section is replaced and kept, newest first,
    in ``history/<slug>.md``; a new one is appended."""
    body = report.strip().splitlines()
    if body and body[0].startswith("#"):
        rest = "\n".join(body[1:]).strip().splitlines()
        body = [f"Latest run: {body[0].lstrip('#').strip()}", "", *rest]
    section = f"## {heading}\n\n" + "\n".join(body).strip() + "\n"
    text = results.read_text() if results.exists() else ""
    match = re.search(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", text, flags=re.M | re.S)
    if match is None:
        results.write_text(text.rstrip() + "\n\n" + section)
        return
    history = results.parent / "history" / f"{slug(heading)}.md"
    history.parent.mkdir(exist_ok=True)
    old = history.read_text() if history.exists() else f"# {heading}: earlier runs, newest first\n"
    title, _, rest = old.partition("\n")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    superseded = f"\n## Superseded {stamp}\n\n" + match.group(0).split("\n", 1)[1].strip() + "\n"
    history.write_text(title + "\n" + superseded + rest)
    results.write_text(text[: match.start()] + section + "\n" + text[match.end():].lstrip("\n"))
