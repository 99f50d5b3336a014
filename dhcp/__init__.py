"""Lark's in-house DHCPv4 client (sans-IO core and trio driver); filled in by a later issue."""
