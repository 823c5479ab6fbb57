"""Entry points shared by the recipes (``recipes/*.py`` only set their task's defaults)."""

from trl_embodied.scripts.ppo import ScriptArguments, main, make_parser

__all__ = ["ScriptArguments", "main", "make_parser"]
