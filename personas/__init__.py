"""Personas: the record, importers, text-to-persona, persona-to-persona, the graph and dedup."""

if __name__ == "personas":  # the repository root is on sys.path: this folder is not a top-level package
    raise ModuleNotFoundError(
        "No module named 'personas' (this folder is personahub.personas)", name="personas")
from personahub.personas.record import Persona, normalize_text, persona_id_for

__all__ = ["Persona", "normalize_text", "persona_id_for"]
