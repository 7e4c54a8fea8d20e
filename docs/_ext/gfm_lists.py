"""An MkDocs hook: lists written for GitHub render the same on the site.

The README, the changelog and the results pages are written for GitHub's Markdown, where a list
may follow a paragraph line directly and nested content (a sub-list, a table, a code block) is
indented by 2 spaces under its item. Python-Markdown, which MkDocs uses, needs a blank line
before a list and 4 spaces of indentation for content inside an item. This hook adds a
Markdown preprocessor (after ``pymdownx.snippets``, so included files are covered too) that,
outside code blocks:

* puts a blank line before a list item that directly follows a paragraph line (also a later
  paragraph of the item before);
* inside a list that starts at the left margin, doubles the indentation of every indented line
  (a fenced block inside the list moves right as a whole, its own indentation kept).

Only the rendered site changes; the source files are not touched. Loaded by ``mkdocs.yml``
(``hooks``).
"""

from __future__ import annotations

import re
from typing import Any

from markdown import Extension, Markdown
from markdown.preprocessors import Preprocessor

ITEM = re.compile(r"^( *)([-*+]|\d+[.)]) +\S")
FIRST = re.compile(r"^([-*+]|1[.)]) ")  # what may start a list right after a paragraph line
FENCE = re.compile(r"^( *)(```+|~~~+)")


class GithubLists(Preprocessor):
    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        in_list = False  # inside a list that starts at the left margin
        fence: str | None = None  # the marker of the open fenced block
        fence_shift = 0  # what a fenced block inside a list moves right by
        previous = ""
        block_is_item = False  # whether the lines since the last blank one start with an item
        for line in lines:
            if fence is not None:
                out.append(" " * fence_shift + line if line.strip() else line)
                if line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
                    fence = None
                previous = line
                continue
            opening = FENCE.match(line)
            item = ITEM.match(line)
            indent = len(line) - len(line.lstrip(" "))
            if item and indent == 0 and not (in_list or not previous.strip() or FIRST.match(line)):
                item = None  # a wrapped paragraph line that happens to start like "2. "
            after_text = previous.strip() and not previous.lstrip().startswith("|")
            if item and after_text and not block_is_item:
                # a list item right after a paragraph (or after an item's later paragraph):
                # Python-Markdown starts a list only after a blank line
                out.append("")
                previous = ""
            if not previous.strip():
                block_is_item = bool(item)
            if not line.strip():
                out.append(line)
            elif item and indent == 0:
                in_list = True
                out.append(line)
            elif in_list and indent > 0:
                out.append(" " * indent + line)
                if opening:
                    fence, fence_shift = opening.group(2), indent
            else:
                if in_list and not previous.strip():
                    in_list = False  # unindented text after a blank line ends the list
                out.append(line)
            if opening and fence is None and not (in_list and indent > 0):
                fence, fence_shift = opening.group(2), 0
            previous = line
        return out


class GithubListsExtension(Extension):
    def extendMarkdown(self, md: Markdown) -> None:
        # after pymdownx.snippets (32) and whitespace normalisation (30), before
        # pymdownx.superfences' fenced blocks (25)
        md.preprocessors.register(GithubLists(md), "github_lists", 29)


def on_config(config: Any, **kwargs: Any) -> Any:
    config.markdown_extensions.append(GithubListsExtension())
    return config
