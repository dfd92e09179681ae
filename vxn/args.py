"""The CLI's command line parser: the part of click's decorator API that vxn uses.

Importing click costs ~30 ms of every `vxn` call (most of a second in a TCG Dom0),
more than the rest of the CLI together; this module costs under a millisecond.
Commands keep click's shape: `@command`, `@argument` and `@option` stacked on a
function that takes the App and then one keyword per parameter.

Parsing follows Docker's CLI:
- options and arguments mix, unless a command stops at its first argument (`run`
  and `exec`: the container's argv starts there); `--` ends the options;
- short flags combine (`-it`), a value follows its option (`-e K=V`, `-eK=V`,
  `--env K=V`, `--env=K=V`), and a boolean takes `--flag` or `--flag=false`;
- `-h`/`--help` prints the help, unless the command uses `-h` itself (`run -h HOST`).
A usage error raises `UsageError`, which main() prints as click did (the usage, the
hint, the error) and turns into exit 125, like docker.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path as _Path
from typing import Any

Convert = Callable[[str], Any]
HELP_FLAGS = ("-h", "--help")
VERSION_FLAGS = ("-v", "--version")
_UNSET: Any = object()


class UsageError(Exception):
    """A command line that does not parse. The command that met it fills in its usage
    line and its name (`prog`, e.g. `vxn image rm`) on the way out."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.usage = ""
        self.prog = ""

    def show(self) -> str:
        if not self.usage:
            return f"Error: {self.message}\n"
        return f"{self.usage}\nTry '{self.prog} --help' for help.\n\nError: {self.message}\n"


class BadParameter(UsageError):
    """A value a command rejects after parsing; `param_hint` names the option."""

    def __init__(self, message: str, param_hint: str = "") -> None:
        hint = f"Invalid value for '{param_hint}': " if param_hint else "Invalid value: "
        super().__init__(hint + message)


class Abort(Exception):
    """The user declined or interrupted: main() prints `Aborted!`, exit 130."""


# --- value types: str -> value, ValueError (with the message) on a bad one ---------


def UNPROCESSED(text: str) -> str:
    return text


def BOOL(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "t", "yes", "y", "on"):
        return True
    if value in ("0", "false", "f", "no", "n", "off"):
        return False
    raise ValueError(f"{text!r} is not a valid boolean.")


def Choice(choices: Sequence[str]) -> Convert:
    def choice(text: str) -> str:
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(map(repr, choices))}.")
        return text

    choice.metavar = f"[{'|'.join(choices)}]"  # type: ignore[attr-defined]
    return choice


def IntRange(min: int | None = None, max: int | None = None) -> Convert:
    def integer(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a valid integer.") from None
        bounds = [f"x>={min}"] * (min is not None) + [f"x<={max}"] * (max is not None)
        if (min is not None and value < min) or (max is not None and value > max):
            raise ValueError(f"{value} is not in the range {' and '.join(bounds)}.")
        return value

    integer.metavar = "INTEGER"  # type: ignore[attr-defined]
    return integer


def Path(*, exists: bool = False, file_okay: bool = True, dir_okay: bool = True) -> Convert:
    def path(text: str) -> _Path:
        p = _Path(text)
        if exists and not p.exists():
            raise ValueError(f"Path {text!r} does not exist.")
        if not file_okay and p.is_file():
            raise ValueError(f"Directory {text!r} is a file.")
        if not dir_okay and p.is_dir():
            raise ValueError(f"File {text!r} is a directory.")
        return p

    path.metavar = "PATH"  # type: ignore[attr-defined]
    return path


# --- parameters ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    flags: tuple[str, ...]
    dest: str
    is_flag: bool = False
    multiple: bool = False
    default: Any = None
    type: Convert = UNPROCESSED
    help: str = ""
    hidden: bool = False
    metavar: str = ""

    def convert(self, text: str) -> Any:
        try:
            return self.type(text)
        except ValueError as e:
            raise UsageError(f"Invalid value for '{'/'.join(self.flags)}': {e}") from None

    def empty(self) -> Any:
        return tuple(self.default) if self.multiple else self.default


@dataclass(frozen=True, slots=True)
class Argument:
    dest: str
    nargs: int = 1  # 1, or -1: every argument left
    required: bool = True
    type: Convert = UNPROCESSED
    metavar: str = ""

    @property
    def label(self) -> str:
        return self.metavar or self.dest.upper() + ("..." if self.nargs < 0 else "")


def option(
    *decls: str,
    is_flag: bool = False,
    multiple: bool = False,
    default: Any = _UNSET,
    type: Convert | None = None,
    help: str = "",
    hidden: bool = False,
    metavar: str = "",
) -> Callable[[Any], Any]:
    """`@option("-e", "--env", multiple=True)`; a declaration without dashes names the
    keyword (default: the first long flag). A flag is three-valued:
    its default (`default=None`: not given), `--flag`, or `--flag=false`."""
    flags = tuple(d for d in decls if d.startswith("-"))
    names = [d for d in decls if not d.startswith("-")]
    longs = [f for f in flags if f.startswith("--")]
    dest = names[0] if names else (longs or flags)[0].lstrip("-").replace("-", "_")
    if default is _UNSET:
        default = () if multiple else False if is_flag else None
    param = Option(
        flags=flags,
        dest=dest,
        is_flag=is_flag,
        multiple=multiple,
        default=default,
        type=type or (BOOL if is_flag else UNPROCESSED),
        help=help,
        hidden=hidden,
        metavar=metavar,
    )
    return _attach(param)


def argument(
    dest: str,
    *,
    nargs: int = 1,
    required: bool | None = None,
    type: Convert | None = None,
    metavar: str = "",
) -> Callable[[Any], Any]:
    """`@argument("image")`; `nargs=-1` takes every argument left (optional unless
    `required=True`)."""
    if required is None:
        required = nargs == 1
    return _attach(Argument(dest, nargs, required, type or UNPROCESSED, metavar))


def _attach(param: Option | Argument) -> Callable[[Any], Any]:
    def decorate(f: Any) -> Any:
        if isinstance(f, Command):
            raise TypeError("parameters go below @command")
        f.__dict__.setdefault("__vxn_params__", []).insert(0, param)  # decorators run bottom-up
        return f

    return decorate


# --- commands -----------------------------------------------------------------------


@dataclass
class Command:
    """A command: `main(obj, argv)` parses argv and calls `callback(obj, **values)`."""

    name: str
    callback: Callable[..., Any]
    options: list[Option] = field(default_factory=list)
    arguments: list[Argument] = field(default_factory=list)
    help: str = ""
    interspersed: bool = True
    version: str = ""  # what -v/--version prints; "" for none

    @property
    def summary(self) -> str:
        return self.help.strip().split("\n\n")[0].replace("\n", " ")

    def help_flags(self) -> tuple[str, ...]:
        taken = {f for o in self.options for f in o.flags}
        return tuple(f for f in HELP_FLAGS if f not in taken)

    def usage(self, prog: str) -> str:
        words = [f"Usage: {prog} [OPTIONS]"]
        for a in self.arguments:
            words.append(a.label if a.required else f"[{a.label}]")
        return " ".join(words)

    def help_text(self, prog: str) -> str:
        lines = [self.usage(prog), ""]
        if self.help:
            lines += ["  " + line if line else "" for line in _cleandoc(self.help)] + [""]
        rows = [(_option_words(o), o.help) for o in self.options if not o.hidden]
        if self.version:
            rows.append((", ".join(VERSION_FLAGS), "Show the version and exit."))
        rows.append((", ".join(self.help_flags()), "Show this message and exit."))
        lines += ["Options:", *_table(rows)]
        return "\n".join(lines) + "\n"

    def parse(self, argv: Sequence[str], prog: str) -> tuple[dict[str, Any], str]:
        """(values by keyword, the text to print instead of running: help or version)."""
        try:
            return self._parse(argv, prog)
        except UsageError as e:
            if not e.usage:
                e.usage, e.prog = self.usage(prog), prog
            raise

    def _parse(self, argv: Sequence[str], prog: str) -> tuple[dict[str, Any], str]:
        values = {o.dest: o.empty() for o in self.options}
        given: list[str] = []
        helps = self.help_flags()
        versions = VERSION_FLAGS if self.version else ()
        show = ""
        flags = {f: o for o in self.options for f in o.flags}
        words = list(argv)
        i = 0
        options_end = False
        while i < len(words):
            word = words[i]
            i += 1
            if options_end or word == "-" or not word.startswith("-"):
                given.append(word)
                options_end = options_end or not self.interspersed
                continue
            if word == "--":
                options_end = True
                continue
            if word in helps or word in versions:
                show = show or (self.help_text(prog) if word in helps else self.version + "\n")
                continue
            for name, inline in _split(word, flags):
                found = flags.get(name)
                if found is None:
                    raise UsageError(f"No such option '{name}'.")
                if found.is_flag:
                    _set(values, found, True if inline is None else found.convert(inline))
                    continue
                if inline is None:
                    if i >= len(words):
                        raise UsageError(f"Option '{name}' requires an argument.")
                    inline, i = words[i], i + 1
                _set(values, found, found.convert(inline))
        if show:
            return values, show
        self._assign(given, values)
        return values, ""

    def _assign(self, given: list[str], values: dict[str, Any]) -> None:
        for a in self.arguments:
            if a.nargs < 0:
                taken, given = given, []
                if a.required and not taken:
                    raise UsageError(f"Missing argument '{a.label}'.")
                values[a.dest] = tuple(self._convert(a, t) for t in taken)
            elif given:
                values[a.dest] = self._convert(a, given.pop(0))
            elif a.required:
                raise UsageError(f"Missing argument '{a.label}'.")
            else:
                values[a.dest] = None
        if given:
            raise UsageError(f"Got unexpected extra argument ({' '.join(given)})")

    def _convert(self, a: Argument, text: str) -> Any:
        try:
            return a.type(text)
        except ValueError as e:
            raise UsageError(f"Invalid value for '{a.label}': {e}") from None

    def main(self, obj: Any, argv: Sequence[str], prog: str = "") -> Any:
        """Parse `argv` and run the command; `prog` names it in help and errors."""
        prog = prog or self.name
        values, show = self.parse(argv, prog)
        if show:
            echo(show, nl=False)
            return 0
        try:
            return self.callback(obj, **values)
        except UsageError as e:  # a BadParameter the command found
            if not e.usage:
                e.usage, e.prog = self.usage(prog), prog
            raise


class Group(Command):
    """A command whose first argument names a subcommand; the rest of the line is the
    subcommand's. `load(name)` finds one not added: the root group imports a
    command's module only to run it."""

    def __init__(
        self,
        name: str,
        callback: Callable[..., Any] | None = None,
        *,
        help: str = "",
        options: list[Option] | None = None,
        load: Callable[[str], Command] | None = None,
        names: Sequence[str] = (),
        version: str = "",
    ) -> None:
        rest = [Argument(_REST, -1, True, metavar="COMMAND")]  # the subcommand and its line
        super().__init__(
            name, callback or _keep_obj, list(options or ()), rest, help, False, version
        )
        self.commands: dict[str, Command] = {}
        self._load = load
        self._names = tuple(names)

    def add_command(self, command: Command, name: str | None = None) -> None:
        import copy

        named = copy.copy(command)
        named.name = name or command.name
        self.commands[named.name] = named

    def command(self, name: str, **kw: Any) -> Callable[[Callable[..., Any]], Command]:
        def decorate(f: Callable[..., Any]) -> Command:
            made = command(name, **kw)(f)
            self.add_command(made)
            return self.commands[name]

        return decorate

    def names(self) -> list[str]:
        return sorted({*self.commands, *self._names})

    def get(self, name: str) -> Command | None:
        if name not in self.commands and name in self._names and self._load is not None:
            self.add_command(self._load(name), name)
        return self.commands.get(name)

    def usage(self, prog: str) -> str:
        return f"Usage: {prog} [OPTIONS] COMMAND [ARGS]..."

    def help_text(self, prog: str) -> str:
        text = super().help_text(prog)
        rows = [(n, c.summary) for n in self.names() if (c := self.get(n)) is not None]
        return text + "\nCommands:\n" + "\n".join(_table(rows)) + "\n"

    def main(self, obj: Any, argv: Sequence[str], prog: str = "") -> Any:
        prog = prog or self.name
        if not argv:  # `vxn` alone: what there is to run
            echo(self.help_text(prog), nl=False)
            return 0
        values, show = self.parse(argv, prog)
        rest = values.pop(_REST, ())
        if show:
            echo(show, nl=False)
            return 0
        name, *args = rest
        sub = self.get(name)
        if sub is None:
            error = UsageError(f"No such command '{name}'.")
            error.usage, error.prog = self.usage(prog), prog
            raise error
        return sub.main(self.callback(obj, **values), args, f"{prog} {name}")


_REST = "__rest__"  # a group's subcommand and its arguments


def _keep_obj(obj: Any, **_: Any) -> Any:
    return obj


def command(
    name: str | None = None,
    *,
    help: str | None = None,
    interspersed: bool = True,
    version: str = "",
) -> Callable[[Callable[..., Any]], Command]:
    """`@command("run", interspersed=False)`: the function's docstring is its help."""

    def decorate(f: Callable[..., Any]) -> Command:
        params: list[Option | Argument] = f.__dict__.get("__vxn_params__", [])
        return Command(
            name=name or f.__name__.replace("_", "-"),
            callback=f,
            options=[p for p in params if isinstance(p, Option)],
            arguments=[p for p in params if isinstance(p, Argument)],
            help=help if help is not None else (f.__doc__ or ""),
            interspersed=interspersed,
            version=version,
        )

    return decorate


def group(name: str) -> Callable[[Callable[..., Any]], Group]:
    """`@group("image")` on a function whose docstring is the help; subcommands join
    with `add_command` and `@<group>.command(...)`."""

    def decorate(f: Callable[..., Any]) -> Group:
        params: list[Option | Argument] = f.__dict__.get("__vxn_params__", [])
        options = [p for p in params if isinstance(p, Option)]
        return Group(name, help=f.__doc__ or "", options=options)

    return decorate


# --- output -------------------------------------------------------------------------


def echo(message: object = "", *, err: bool = False, nl: bool = True) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(f"{message}\n" if nl else str(message))
    stream.flush()


def confirm(text: str, *, default: bool = False) -> bool:
    """Ask on stdout, read a line from stdin; no answer is `default`, EOF aborts."""
    echo(f"{text} [{'Y/n' if default else 'y/N'}]: ", nl=False)
    line = sys.stdin.readline()
    if not line:
        echo()
        raise Abort()
    answer = line.strip().lower()
    return default if not answer else answer in ("y", "yes")


def _split(word: str, flags: dict[str, Option]) -> list[tuple[str, str | None]]:
    """One word of options as (flag, value given in the word): `--env=K=V` is
    [("--env", "K=V")], `-iteK=V` is [("-i", None), ("-t", None), ("-e", "K=V")]."""
    if word.startswith("--"):
        name, eq, value = word.partition("=")
        return [(name, value if eq else None)]
    found: list[tuple[str, str | None]] = []
    for j in range(1, len(word)):
        name = "-" + word[j]
        option = flags.get(name)
        if option is not None and not option.is_flag:
            found.append((name, word[j + 1 :] or None))  # the rest of the word is its value
            break
        found.append((name, None))
    return found


def _set(values: dict[str, Any], option: Option, value: Any) -> None:
    if option.multiple:
        values[option.dest] = (*values[option.dest], value)
    else:
        values[option.dest] = value


def _option_words(o: Option) -> str:
    words = ", ".join(o.flags)
    if o.is_flag:
        return words
    metavar = o.metavar or getattr(o.type, "metavar", "TEXT")
    return f"{words} {metavar}"


def _table(rows: list[tuple[str, str]]) -> list[str]:
    width = min(30, max((len(left) for left, _ in rows), default=0))
    out = []
    for left, right in rows:
        if len(left) > width:
            out += [f"  {left}", f"  {'':<{width}}  {right}"] if right else [f"  {left}"]
        else:
            out.append(f"  {left:<{width}}  {right}".rstrip())
    return out


def _cleandoc(text: str) -> list[str]:
    """A docstring's lines: the first stripped, the rest dedented (inspect.cleandoc,
    without importing inspect)."""
    import textwrap

    first, _, rest = text.expandtabs().partition("\n")
    lines = [first.strip(), *textwrap.dedent(rest).splitlines()]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines
