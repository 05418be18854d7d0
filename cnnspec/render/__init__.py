"""Renderers: the summary rows and their text, JSON, Markdown and plot forms; the reference
tables of docs/spec-language.md (no torch)."""
