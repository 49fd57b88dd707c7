"""Personas: the record, importers, text-to-persona, persona-to-persona, the graph and dedup."""

from personas.record import Persona, normalize_text, persona_id_for

__all__ = ["Persona", "normalize_text", "persona_id_for"]
