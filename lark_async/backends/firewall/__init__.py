"""The job's firewall: nftables (the ``inet lark`` and ``bridge lark`` tables) or iptables."""
