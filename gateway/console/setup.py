"""`/console/setup`: the set-up wizard's steps (gateway/wizard.py, the same as `koppel init`) as forms.

One step per page. The answers so far travel in the form as hidden fields (`answer.<key>`, each the
answer's canonical text; no secrets: secret steps take variable names) and are checked again with every
POST, so a page never trusts what it sent before. When every step is answered the page shows the config
file, what `koppel config check` says of it, the environment variables to set and the commands to run
next; **Download** sends the same file as `koppel.toml`. The console writes no file on the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from gateway import wizard
from gateway.wizard import Answers, Invalid, Step

if TYPE_CHECKING:
    from gateway.console import Console, Form

ANSWER = "answer."
FLOW = "flow."


@dataclass
class Walk:
    """Where the answers in a form lead: the valid answers, the step to ask next (None: every step is
    answered) and, when the step's answer was refused, why."""

    answers: Answers = field(default_factory=dict)
    step: Step | None = None
    error: str = ""
    given: str | None = None
    """What was sent for the step (shown again with its error)."""


def text_of(step: Step, value: Any) -> str:
    """An answer as the text that parses back to it."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or ("none" if step.kind == "flows" else "")
    return str(value)


def submitted(form: Form) -> dict[str, str]:
    """Step key → text: the answers so far, and the current step's (`step`, with `value` or flow boxes)."""
    raw = {key.removeprefix(ANSWER): value for key, value in form.items() if key.startswith(ANSWER)}
    current = form.get("step", "")
    if current:
        if form.get("kind") == "flows":
            raw[current] = ", ".join(key.removeprefix(FLOW) for key in form if key.startswith(FLOW)) or "none"
        else:
            raw[current] = form.get("value", "")
    return raw


def walk(raw: dict[str, str]) -> Walk:
    """The steps answered in order from these texts, up to the first not answered or refused."""
    found = Walk()
    while (step := wizard.next_step(found.answers)) is not None:
        if step.key not in raw:
            found.step = step
            return found
        try:
            found.answers[step.key] = step.parse(raw[step.key], found.answers)
        except Invalid as exc:
            found.step, found.error, found.given = step, str(exc), raw[step.key]
            return found
    return found


def _view(found: Walk) -> dict[str, Any]:
    """The template's values: the answers so far (as hidden fields and a summary), the step's form, or the
    finished file with its check and the next steps."""
    answers = found.answers
    done = [(wizard.question(step, answers), step.key, text_of(step, answers[step.key]))
            for step in wizard.applicable(answers) if step.key in answers]  # fmt: skip
    values: dict[str, Any] = {"done": done, "error": found.error}
    step = found.step
    if step is not None:
        default = step.default_text(answers)
        value = found.given if found.given is not None else (default or "")
        chosen = {word.strip() for word in value.split(",")}
        choices = [(choice.value, choice.label, choice.value in chosen) for choice in step.options(answers)]
        values["step"] = {"key": step.key, "kind": step.kind, "question": wizard.question(step, answers),
                          "help": step.help, "value": value, "optional": step.optional, "choices": choices}  # fmt: skip
        return values
    text = wizard.render(answers)
    pair = wizard.PAIR_SPECS[answers["pair"]]
    commands = ["koppel config check koppel.toml"]
    commands += [f"koppel connect {system} --config koppel.toml" for system in wizard.oauth_systems(answers)]
    if wizard.webhook_sources(answers):
        commands.append("koppel endpoints sync --config koppel.toml")
    values.update(toml=text, problems=wizard.check(text, answers), pair_title=pair.title, commands=commands,
                  variables=list(wizard.env_names(answers).items()),
                  webhooks=bool(wizard.webhook_sources(answers)))  # fmt: skip
    return values


async def setup(request: Request, console: Console, form: Form, session: str) -> Response:
    """GET: the first step. POST: the answers so far and this step's; the next step, this one again with
    the reason it was refused, or the finished file (or, with `download`, the file itself)."""
    found = walk(submitted(form)) if request.method == "POST" else Walk(step=wizard.next_step({}))
    if request.method == "POST" and "download" in form and found.step is None:
        headers = {"content-disposition": 'attachment; filename="koppel.toml"'}
        return Response(wizard.render(found.answers), media_type="application/toml; charset=utf-8", headers=headers)
    status = 400 if found.error else 200
    return console.page(request, "setup.html", status, session=session, title="Set up an integration",
                        **_view(found))  # fmt: skip


__all__ = ["setup", "submitted", "text_of", "walk"]
