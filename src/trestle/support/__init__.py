"""Helpers any layer may use that know nothing of Trestle: lazy exports, the collector."""
