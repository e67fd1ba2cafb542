"""Small helpers any layer may use that know nothing of Trestle: lazy exports, pausing the
garbage collector.
"""
