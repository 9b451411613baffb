"""Discord's limits on what a bot may send, and the error bodies Discord answers with.

Each check returns a list of `Problem`s; an empty list means Discord would accept the body.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

INITIAL_RESPONSE_DEADLINE = 3.0
TOKEN_LIFETIME = 15 * 60.0
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024

CONTENT_MAX = 2000
EMBEDS_MAX = 10
EMBED_TITLE_MAX = 256
EMBED_DESCRIPTION_MAX = 4096
EMBED_FIELDS_MAX = 25
EMBED_FIELD_NAME_MAX = 256
EMBED_FIELD_VALUE_MAX = 1024
EMBED_FOOTER_MAX = 2048
EMBED_AUTHOR_MAX = 256
EMBEDS_TOTAL_MAX = 6000
CHOICES_MAX = 25
CHOICE_TEXT_MAX = 100
COMMAND_DESCRIPTION_MAX = 100
COMMAND_OPTIONS_MAX = 25

COMMAND_NAME = re.compile(r"^[-_\w]{1,32}$")

# The locales Discord accepts as keys of name_localizations and description_localizations.
LOCALES = frozenset(
    [
        "id",
        "da",
        "de",
        "en-GB",
        "en-US",
        "es-ES",
        "es-419",
        "fr",
        "hr",
        "it",
        "lt",
        "hu",
        "nl",
        "no",
        "pl",
        "pt-BR",
        "ro",
        "fi",
        "sv-SE",
        "vi",
        "tr",
        "cs",
        "el",
        "bg",
        "ru",
        "uk",
        "hi",
        "th",
        "zh-CN",
        "ja",
        "zh-TW",
        "ko",
    ]
)


class Problem(NamedTuple):
    """One thing Discord would refuse: where in the body, Discord's code word, and why."""

    path: tuple[str | int, ...]
    code: str
    message: str


def _too_long(path: tuple[str | int, ...], limit: int) -> Problem:
    return Problem(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def _embed_text(embed: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str, int]]:
    """Every text of an embed that counts toward the limits: (path, text, its own limit)."""
    texts = [
        (("title",), embed.get("title") or "", EMBED_TITLE_MAX),
        (("description",), embed.get("description") or "", EMBED_DESCRIPTION_MAX),
        (("footer", "text"), (embed.get("footer") or {}).get("text") or "", EMBED_FOOTER_MAX),
        (("author", "name"), (embed.get("author") or {}).get("name") or "", EMBED_AUTHOR_MAX),
    ]
    for i, f in enumerate(embed.get("fields") or []):
        texts.append((("fields", i, "name"), f.get("name") or "", EMBED_FIELD_NAME_MAX))
        texts.append((("fields", i, "value"), f.get("value") or "", EMBED_FIELD_VALUE_MAX))
    return texts


def message_problems(body: dict[str, Any]) -> list[Problem]:
    """Length limits on content and embeds, as Discord checks them on create and edit."""
    problems = []
    content = body.get("content")
    if content is not None and len(content) > CONTENT_MAX:
        problems.append(_too_long(("content",), CONTENT_MAX))
    embeds = body.get("embeds") or []
    if len(embeds) > EMBEDS_MAX:
        problems.append(_too_long(("embeds",), EMBEDS_MAX))
    total = 0
    for i, embed in enumerate(embeds):
        if len(embed.get("fields") or []) > EMBED_FIELDS_MAX:
            problems.append(_too_long(("embeds", i, "fields"), EMBED_FIELDS_MAX))
        for path, text, limit in _embed_text(embed):
            total += len(text)
            if len(text) > limit:
                problems.append(_too_long(("embeds", i, *path), limit))
    if total > EMBEDS_TOTAL_MAX:
        problems.append(
            Problem(
                ("embeds",),
                "MAX_EMBED_SIZE_EXCEEDED",
                f"Embed size exceeds maximum size of {EMBEDS_TOTAL_MAX}",
            )
        )
    return problems


def is_empty_message(body: dict[str, Any], file_count: int) -> bool:
    """Discord refuses to create a message with nothing in it (error 50006)."""
    return not (body.get("content") or body.get("embeds") or body.get("components") or file_count)


def choice_problems(choices: list[dict[str, Any]]) -> list[Problem]:
    """Autocomplete answers: at most 25 choices, each name and string value 1-100 characters."""
    problems = []
    if len(choices) > CHOICES_MAX:
        problems.append(_too_long(("choices",), CHOICES_MAX))
    for i, choice in enumerate(choices):
        for key in ("name", "value"):
            value = choice.get(key)
            if isinstance(value, str) and not 1 <= len(value) <= CHOICE_TEXT_MAX:
                problems.append(
                    Problem(
                        ("choices", i, key),
                        "BASE_TYPE_BAD_LENGTH",
                        f"Must be between 1 and {CHOICE_TEXT_MAX} in length.",
                    )
                )
    return problems


def _name_problems(path: tuple[str | int, ...], name: str, slash: bool) -> list[Problem]:
    if slash and (not COMMAND_NAME.match(name) or name != name.lower()):
        return [Problem(path, "APPLICATION_COMMAND_INVALID_NAME", "Invalid name")]
    if not slash and not 1 <= len(name) <= 32:
        return [_too_long(path, 32)]
    return []


def _description_problems(path: tuple[str | int, ...], text: str) -> list[Problem]:
    if 1 <= len(text) <= COMMAND_DESCRIPTION_MAX:
        return []
    message = f"Must be between 1 and {COMMAND_DESCRIPTION_MAX} in length."
    return [Problem(path, "BASE_TYPE_BAD_LENGTH", message)]


def _localisation_problems(
    thing: dict[str, Any], slash: bool, described: bool, name_max: int = 32
) -> list[Problem]:
    """Translations of a command's, option's or choice's name and description: known locales,
    and each translation as valid as the name or description it translates."""
    problems = []
    for key in ("name_localizations", "description_localizations"):
        for locale, text in (thing.get(key) or {}).items():
            path = (key, locale)
            if locale not in LOCALES:
                problems.append(Problem(path, "LOCALE_INVALID", f"{locale!r} is not a locale"))
            elif key == "description_localizations":
                problems += _description_problems(path, text) if described else []
            elif name_max == 32:
                problems += _name_problems(path, text, slash)
            elif not 1 <= len(text) <= name_max:
                problems.append(_too_long(path, name_max))
    return problems


def command_problems(command: dict[str, Any]) -> list[Problem]:
    """The parts of Discord's validation of a command definition a bot is likely to trip."""
    # Context-menu commands may have spaces and capitals, and carry no description.
    slash = command.get("type", 1) == 1
    problems = _name_problems(("name",), command.get("name") or "", slash)
    if slash:
        problems += _description_problems(("description",), command.get("description") or "")
    problems += _localisation_problems(command, slash, slash)
    problems += _option_problems(command.get("options") or [], ("options",))
    return problems


def _option_problems(options: list[dict[str, Any]], path: tuple[str | int, ...]) -> list[Problem]:
    problems = []
    if len(options) > COMMAND_OPTIONS_MAX:
        problems.append(_too_long(path, COMMAND_OPTIONS_MAX))
    seen_optional = False
    for i, option in enumerate(options):
        problems += [
            Problem((*path, i, *p.path), p.code, p.message)
            for p in _localisation_problems(option, True, True)
        ]
        for j, choice in enumerate(option.get("choices") or []):
            problems += [
                Problem((*path, i, "choices", j, *p.path), p.code, p.message)
                for p in _localisation_problems(choice, False, False, CHOICE_TEXT_MAX)
            ]
        if option.get("type") in (1, 2):
            problems += _option_problems(option.get("options") or [], (*path, i, "options"))
            continue
        if option.get("required") and seen_optional:
            problems.append(
                Problem(
                    (*path, i, "required"),
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
            )
        seen_optional = seen_optional or not option.get("required")
        problems += [
            Problem((*path, i, *p.path), p.code, p.message)
            for p in choice_problems(option.get("choices") or [])
        ]
    return problems


def describe(problems: list[Problem], prefix: tuple[str | int, ...] = ()) -> str:
    """One line naming each problem by its path in the body, for violation records."""
    return "; ".join(".".join(map(str, (*prefix, *p.path))) + f": {p.message}" for p in problems)


def _nest(problems: list[Problem], prefix: tuple[str | int, ...]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for problem in problems:
        node = tree
        for key in (*prefix, *problem.path):
            node = node.setdefault(str(key), {})
        node.setdefault("_errors", []).append({"code": problem.code, "message": problem.message})
    return tree


def invalid_form_body(
    problems: list[Problem], prefix: tuple[str | int, ...] = ()
) -> dict[str, Any]:
    """Discord's 400 body for a request that failed validation (code 50035)."""
    return {"message": "Invalid Form Body", "code": 50035, "errors": _nest(problems, prefix)}
