"""`koppel init [PATH]`: the set-up wizard (gateway/wizard.py) at a terminal, or from a script.

    koppel init my.toml                                  asks step by step (Enter takes the default shown)
    koppel init my.toml --pair squarespace-exactonline --flows orders --yes --set exact.client_id=...
                                                         asks nothing: every step not given takes its default

Answers can also come from stdin, one line per question (`printf '...' | koppel init my.toml`). Ctrl-C or
the end of the input before the file is written aborts with exit code 1 and writes nothing. The file is
checked as `koppel config check` checks it before it is written; then the wizard offers `koppel connect`
for the systems connected by OAuth consent and `koppel endpoints sync` for the systems whose webhooks
feed Koppel (y/N; declined, it prints the command).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway import wizard
from gateway.wizard import Answers, Invalid, Step

DEFAULT_FILE = "koppel.toml"
LAUNCHER = "KOPPEL_LAUNCHER"
"""Set by run.sh to how it was called: the commands the wizard prints start with it (else `koppel`)."""


class Aborted(Exception):
    """The user ended the input (EOF) or pressed Ctrl-C."""


def register(sub: Any) -> None:
    init = sub.add_parser("init", help="write a config file step by step: the two systems, their flows, settings")
    init.add_argument("file", nargs="?", default=DEFAULT_FILE, metavar="PATH",
                      help=f"the config file to write (default {DEFAULT_FILE})")
    init.add_argument("--pair", help="the two systems: " + ", ".join(wizard.PAIR_SPECS))
    init.add_argument("--flows", metavar="FLOW,...",
                      help="the flows (orders, customers, products, stock), in each direction the pair carries them")
    init.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="answers",
                      help="answer a step, e.g. --set shop.base_url=https://shop.example (repeatable)")
    init.add_argument("--yes", "-y", action="store_true",
                      help="ask nothing: every step not answered takes its default (for scripts)")
    init.add_argument("--force", action="store_true", help="overwrite PATH when it exists")
    init.set_defaults(func=cmd_init)  # fmt: skip


def _fail(message: str, code: int = 2) -> int:
    print(f"koppel: init: {message}", file=sys.stderr)
    return code


def _given(args: argparse.Namespace) -> tuple[dict[str, str], list[str]]:
    """The answers the options give, step key → text; and what is wrong with the options."""
    given: dict[str, str] = {}
    problems: list[str] = []
    keys = {step.key for step in wizard.STEPS}
    for item in args.answers:
        key, sep, value = item.partition("=")
        if not sep:  # the argument is not echoed: it may be a secret
            problems.append("--set takes KEY=VALUE (an argument without =)")
        elif key.strip() not in keys:
            problems.append(f"--set {key.strip()}: no such step; the steps are {', '.join(sorted(keys))}")
        else:
            given[key.strip()] = value
    if args.pair is not None:
        given["pair"] = args.pair
    if args.flows is not None:
        pair = wizard.PAIR_SPECS.get(given.get("pair", ""))
        if pair is None:
            problems.append("--flows needs the pair (--pair NAME): which direction each flow goes depends on it")
        else:
            wanted = [flow.strip() for flow in args.flows.split(",") if flow.strip()]
            first, second = pair.systems
            there, back = pair.flows(first, second), pair.flows(second, first)
            unknown = [flow for flow in wanted if flow not in there + back]
            if unknown:
                problems.append(f"--flows: {pair.name} carries no {', '.join(unknown)}; it carries "
                                f"{', '.join(there)} there and {', '.join(back) or 'nothing'} back")  # fmt: skip
            given["flows"] = ", ".join(flow for flow in there if flow in wanted) or "none"
            given["flows_back"] = ", ".join(flow for flow in back if flow in wanted) or "none"
    return given, problems


def _show(step: Step, answers: Answers) -> None:
    """The step's question, its help and its choices."""
    print()
    print(wizard.question(step, answers))
    if step.help:
        print(f"  {step.help}")
    options = step.options(answers)
    width = max((len(choice.value) for choice in options), default=0)
    if step.kind == "choice":
        for number, choice in enumerate(options, 1):
            print(f"  {number}) {choice.value:<{width}}  {choice.label}")
    elif step.kind == "flows":
        print(f"  carries: {', '.join(choice.value for choice in options) or 'nothing'}")


def _read(step: Step, answers: Answers, read: Callable[[str], str]) -> str:
    """One answer to the step, its default in brackets."""
    default = step.default_text(answers)
    shown = f" [{default}]" if default is not None else (" [blank: none]" if step.optional else "")
    try:
        raw = read(f"{step.key}{shown}: ")
    except (EOFError, KeyboardInterrupt):
        print()
        raise Aborted from None
    if not sys.stdin.isatty():
        print()  # answers piped in: each on its own line in the transcript (not echoed: it could be a secret)
    return raw


class Foreign(Exception):
    """Answers given (--set) for steps the chosen pair does not have."""


def _interview(given: dict[str, str], read: Callable[[str], str]) -> Answers:
    """Every step, each given answer taken (asked when invalid), the others asked until valid."""
    answers: Answers = {}
    while (step := wizard.next_step(answers)) is not None:
        pair = wizard.pair_of(answers)
        if pair is not None:  # said as soon as the pair is known, not after every question
            foreign = [key for key in given if key.partition(".")[0] in set(wizard.SYSTEM_KINDS) - set(pair.systems)]
            if foreign:
                raise Foreign(f"--set {', '.join(foreign)}: not asked for {pair.name}; nothing written")
        if step.key in given:
            try:
                answers[step.key] = step.parse(given.pop(step.key), answers)
                continue
            except Invalid as exc:
                print(f"  --set {step.key}: {exc}")
        _show(step, answers)
        while step.key not in answers:
            try:
                answers[step.key] = step.parse(_read(step, answers, read), answers)
            except Invalid as exc:
                print(f"  ✗ {exc}")
    return answers


def _confirm(question: str, read: Callable[[str], str]) -> bool:
    """A y/N question (blank, the end of the input and Ctrl-C: no)."""
    while True:
        try:
            answer = read(f"{question} [y/N]: ").strip().lower()
        except (EOFError, KeyboardInterrupt):
            print()
            return False
        if not sys.stdin.isatty():
            print()
        if answer in ("", "n", "no"):
            return False
        if answer in ("y", "yes"):
            return True
        print("  ✗ y or n")


def _write(path: Path, text: str, *, force: bool) -> None:
    """Write the file whole: over an existing one only with `force` (a temporary file renamed over it)."""
    if force:
        temporary = path.with_name(f".{path.name}.koppel-init")
        try:
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        return
    try:
        with path.open("x", encoding="utf-8") as file:  # FileExistsError: it appeared meanwhile
            file.write(text)
    except FileExistsError:
        raise
    except OSError:
        path.unlink(missing_ok=True)  # no half-written file
        raise


def cmd_init(args: argparse.Namespace) -> int:
    from gateway.checks import check_file

    read = input  # looked up at each run (a test's stand-in)
    path = Path(args.file)
    if path.exists() and not args.force:
        return _fail(f"{path} exists; pass --force to overwrite it (or give another PATH)")
    if not path.parent.is_dir():
        return _fail(f"{path.parent} is not a directory; create it first")
    given, problems = _given(args)
    if problems:
        return _fail("; ".join(problems))
    if args.yes:
        answers, problems = wizard.complete(given)
        if problems:
            print("koppel: init: the answers are not complete or not valid (give them with --set KEY=VALUE):",
                  file=sys.stderr)  # fmt: skip
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
            return 2
    else:
        print(f"Koppel set-up: writes {path}. Enter takes the [default]; Ctrl-C stops without writing anything.")
        try:
            answers = _interview(given, read)
        except Aborted:
            return _fail("stopped; nothing written", 1)
        except Foreign as exc:
            return _fail(str(exc))
        asked = {step.key for step in wizard.applicable(answers)}
        if set(given) - asked:
            return _fail(f"--set {', '.join(sorted(set(given) - asked))}: not asked in this set-up; nothing written")
    text = wizard.render(answers)
    problems = wizard.check(text, answers)
    if problems:  # the steps should not allow this: say what, and write nothing
        return _fail("the answers make a config `koppel config check` refuses; nothing written: " + "; ".join(problems))
    try:
        _write(path, text, force=args.force)
    except FileExistsError:
        return _fail(f"{path} exists; pass --force to overwrite it (or give another PATH)")
    except OSError as exc:
        return _fail(f"cannot write {path}: {exc.strerror or exc.__class__.__name__}")
    integrations = wizard.integrations(answers)
    print(f"\nwrote {path}: {wizard.PAIR_SPECS[answers['pair']].title}, {len(integrations)} integration(s)")
    _next_steps(path, answers, check_file(path)[1], read=None if args.yes else read)
    return 0


def _next_steps(path: Path, answers: Answers, problems: list[str], read: Callable[[str], str] | None) -> None:
    """The environment variables to set, then `koppel connect` and `koppel endpoints sync`: run here when
    the user says so (and the config loads: its variables are set), else printed."""
    launcher = os.environ.get(LAUNCHER) or "koppel"
    names = wizard.env_names(answers)
    unset = [name for name in names if not os.environ.get(name)]
    print("\nThe secrets stay in the environment; the file names these variables:")
    for name, what in names.items():
        print(f"  {name:<24} {what}{'' if name in unset else '  (set)'}")
    if problems:
        check = shlex.join([launcher, "config", "check", str(path)])
        print(f"\nSet {'them' if unset else 'what is missing'}, then check the file: {check}")
        for problem in problems:
            print(f"  {problem}")
    else:
        print("\nconfig check: config ok")
    public = urlsplit(str(answers["gateway.public_url"])).hostname or ""
    if wizard.webhook_sources(answers) and (public in ("localhost", "::1") or public.startswith("127.")):
        print(f"\nNote: the systems deliver webhooks to {answers['gateway.public_url']}; a system on the internet "
              "cannot reach this machine's loopback address: give the gateway's public URL (koppel init --force).")
    commands = [(f"Start {wizard.title(system)}'s OAuth consent now (the gateway must be serving at its public URL "
                 "to receive the callback)", ["connect", system, "--config", str(path)])
                for system in wizard.oauth_systems(answers)]  # fmt: skip
    if wizard.webhook_sources(answers):
        systems = " and ".join(wizard.title(system) for system in wizard.webhook_sources(answers))
        commands.append((f"Create {systems}'s webhooks now", ["endpoints", "sync", "--config", str(path)]))
    if not commands:
        return
    from gateway.cli import main

    print("\nNext:")
    for what, argv in commands:
        command = shlex.join([launcher, *argv])
        if read is not None and not problems and _confirm(f"{what} ({command})?", read):
            code = main(argv)
            if code:
                print(f"  it ended with exit code {code}; run it again later: {command}")
        else:
            print(f"  {command}")
