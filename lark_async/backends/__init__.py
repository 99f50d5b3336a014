"""The kernel work: netlink, the firewall, the site LAN, namespaces, addresses, cgroups."""
