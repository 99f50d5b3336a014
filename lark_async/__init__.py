"""Lark: a network of its own for every HTCondor job (README.rst, "Code map")."""
