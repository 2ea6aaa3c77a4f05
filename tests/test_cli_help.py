"""Every option of every marl-* command has help text, so ``--help`` explains
all of it. The commands are found from ``pyproject.toml``'s ``[project.scripts]``:
a new command (or a new option of an old one) without help fails here."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import click
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent


def commands() -> dict[str, click.Command]:
    """``marl-<name>`` -> its click command (sub-commands of a group as ``marl-<name> <sub>``)."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    out: dict[str, click.Command] = {}
    for script, target in scripts.items():
        module = importlib.import_module(target.split(":")[0])
        found = {id(c): c for c in vars(module).values() if isinstance(c, click.Command)}
        assert found, f"{script}: no click command in {module.__name__}"
        stack = list(found.values())
        while stack:  # a group's sub-commands too, wherever they are defined
            cmd = stack.pop()
            out[script if len(found) == 1 else f"{script} {cmd.name}"] = cmd
            if isinstance(cmd, click.Group):
                stack += [c for c in cmd.commands.values() if id(c) not in found]
    return out


def test_every_marl_command_is_found():
    names = {n.split()[0] for n in commands()}
    assert {"marl-train", "marl-eval", "marl-export", "marl-agent", "marl-swarm", "marl-keys"} <= names


def test_every_option_of_every_command_has_help():
    missing = [f"{name} {'/'.join(p.opts)}" for name, cmd in sorted(commands().items()) for p in cmd.params
               if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert not missing, "options without help text: " + ", ".join(missing)


def test_help_shows_the_new_options():
    cmds = commands()
    runner = CliRunner()
    agent = runner.invoke(cmds["marl-agent"], ["--help"], terminal_width=200).output
    for opt in ("--log-level", "--status-every", "--report-every", "--mode", "--hz", "--seed", "--json"):
        assert opt in agent
    swarm = runner.invoke(cmds["marl-swarm"], ["--help"], terminal_width=200).output
    for opt in ("--trace", "--live", "--quiet"):
        assert opt in swarm
