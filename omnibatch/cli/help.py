"""Help and refusals written for people: `--out DIR`, not `--out <path>`; one line per refusal.

Typer labels every value with its Python type (`<str>`, `<list[str]>`, `{inputs}...`).
The group below gives each command's parameters a human metavar when it is built:
the one a parameter declares, else one derived from its name and type, so a
command added later reads the same without remembering to.
"""

from __future__ import annotations

from typing import get_args

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

try:  # typer 0.2x carries its own copy of click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older typer, on click itself
    from click.exceptions import ClickException, NoArgsIsHelpError, UsageError  # type: ignore[no-redef]

_PATH_NAMES = {"out": "DIR", "media": "DIR", "config_path": "FILE"}


class HumanArgument(TyperArgument):
    """A positional argument shown as `INPUT...` in usage and help, with no type label."""

    def _label(self) -> str:
        name = self.metavar or self.name.upper()
        return name if self.nargs == 1 or "..." in name else f"{name}..."

    def _usage_display_name(self) -> str:
        return self._label() if self.required else f"[{self._label()}]"

    def _rich_display_name(self) -> str:
        return self._label()

    def display_type_rich(self, ctx: object) -> str | None:
        return None


def option_metavar(option: TyperOption) -> str:
    """A metavar for an option that declares none: choices as a|b, else from its type and name."""
    desc = option.type_descriptor
    if desc.is_choice:
        return "|".join(str(c) for c in desc.choices or ())
    name = option.name or "value"
    if desc.is_path:
        return _PATH_NAMES.get(name, "PATH")
    annotation = get_args(desc.annotation)[0] if desc.is_list else desc.annotation
    if annotation is int:
        return "N"
    if annotation is float:
        return "SECONDS" if name.endswith(("seconds", "timeout")) else "NUMBER"
    return _PATH_NAMES.get(name, name.upper())


def humanize(command: TyperCommand) -> TyperCommand:
    for param in command.params:
        if isinstance(param, TyperArgument) and not isinstance(param, HumanArgument):
            param.__class__ = HumanArgument  # same fields; only how it is shown changes
        elif isinstance(param, TyperOption) and not param.is_flag and param.metavar is None:
            param.metavar = option_metavar(param)
    return command


class HumanGroup(TyperGroup):
    """The `omnibatch` group: every command it holds shows human metavars."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - click's own signature
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            humanize(command)


def refusal_line(exc: ClickException) -> str:
    """A usage error as one line: what is wrong, and where the options are listed.

    `omnibatch` alone (or a group without its command) still prints the whole help."""
    if isinstance(exc, NoArgsIsHelpError):
        return exc.format_message()
    message = exc.format_message()
    for prefix in ("Invalid value: ",):
        if message.startswith(prefix):
            message = message[len(prefix):]
    ctx = getattr(exc, "ctx", None)
    hint = f" (see: {ctx.command_path} --help)" if isinstance(exc, UsageError) and ctx else ""
    return f"error: {' '.join(message.split())}{hint}"
