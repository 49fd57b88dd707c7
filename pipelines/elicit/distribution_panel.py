"""Elicit a stated distribution shown the group's panel: as distribution, with the persona texts of
the group's first panel members in the prompt (the shares stated with them as context).
"""

from __future__ import annotations

from dataclasses import dataclass

from personahub.pipelines.elicit.base import Setup, group_key
from personahub.pipelines.elicit.distribution import Distribution

__all__ = ["DISTRIBUTION_PANEL", "DistributionPanel", "PANEL_SHOWN"]

DISTRIBUTION_PANEL = "distribution:panel"
PANEL_SHOWN = 10  # persona texts a prompt shows per group (the panel's first)


@dataclass(frozen=True)
class DistributionPanel(Distribution):
    """Ask for each group's shares, shown some of its panel's persona texts."""

    NAME = DISTRIBUTION_PANEL
    SYNTAX = DISTRIBUTION_PANEL
    HELP = "as distribution, shown some of the group's persona texts"
    answers_agents = False  # its prompt shows a group's panel, which one persona does not have

    def shown(self, text: str) -> dict[str, str]:
        """Show the persona lines as the prompt's panel section."""
        return {"panel": text}

    def texts(self, setup: Setup) -> dict[str, str]:
        """Return each group's first PANEL_SHOWN panel personas as "- text" lines."""
        out = {}
        for attribute, labels in setup.groups:
            key = (attribute, " / ".join(labels))
            out[group_key(*key)] = "\n".join(f"- {setup.personas[p][0]}"
                                             for p in list(setup.panels.get(key, []))[:PANEL_SHOWN])
        return out
