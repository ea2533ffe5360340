"""Who may talk to the FastCGI server over TCP: FCGI_WEB_SERVER_ADDRS, or
--web-server-addrs.

A web server tells the application who the client is (REMOTE_USER, HTTPS,
REMOTE_ADDR) in PARAMS, and the application believes it: whoever may
connect may say anything. The list names addresses and networks, or says
``any``; listeners.py refuses to listen on every interface when nothing
names anyone.
"""

import os

__all__ = ['AllowedPeers', 'allowed_peers', 'peer_allowed']

_ENV_NAME = 'FCGI_WEB_SERVER_ADDRS'
_OPTION = '--web-server-addrs'


class AllowedPeers:
    """Who may connect over TCP: addresses and networks, or anyone (the
    value ``any``, which must be asked for: a value that lists nobody is an
    error, not everyone)."""

    __slots__ = ('addresses', 'networks', 'anyone', 'source', 'entries')

    def __init__(self, addresses=(), networks=(), anyone=False, source=_OPTION, entries=()):
        # Addresses as accept() writes them, IPv4 ones also in the
        # IPv4-mapped form a dual-stack socket reports: one set lookup for
        # the usual peer.
        self.addresses = frozenset(addresses)
        self.networks = tuple(networks)
        self.anyone = anyone
        self.source = source
        self.entries = tuple(entries)

    def __str__(self):
        return 'anyone' if self.anyone else ', '.join(self.entries)


def _network(entry):
    """The address or network *entry* names (IPv4-mapped IPv6 as IPv4)."""
    # Imported where a list is given: a server that checks no peer (or a
    # worker whose list its arbiter parsed) need not hold the module.
    import ipaddress
    text = entry.partition('%')[0] if '/' not in entry else entry
    network = ipaddress.ip_network(text, strict=False)
    if network.version == 6 and network.subnet_of(ipaddress.ip_network('::ffff:0:0/96')):
        network = ipaddress.ip_network((int(network.network_address) & 0xFFFFFFFF,
                                        network.prefixlen - 96))
    return network


def allowed_peers(setting=None, environ=None):
    """Who may connect over TCP: an AllowedPeers, or None when nothing says.

    *setting* (``config.web_server_addrs``, --web-server-addrs) wins over
    FCGI_WEB_SERVER_ADDRS in *environ* (default os.environ). Either is a
    comma-separated string or a list of addresses and CIDR networks, or
    ``any``. ValueError, naming where the value came from, for an empty
    list or a bad entry.
    """
    source = _OPTION
    if setting is None:
        setting = (os.environ if environ is None else environ).get(_ENV_NAME)
        source = _ENV_NAME
    if setting is None or isinstance(setting, AllowedPeers):
        return setting
    entries = [entry.strip() for entry in
               (setting.split(',') if isinstance(setting, str) else setting)]
    entries = [entry for entry in entries if entry]
    if not entries:
        raise ValueError(f"{source}: empty; list the web servers' addresses or networks "
                         f"(e.g. 10.0.0.0/8), or say 'any' to accept everyone")
    if any(entry.lower() == 'any' for entry in entries):
        if len(entries) > 1:
            raise ValueError(f"{source}: 'any' stands alone (it already means everyone)")
        return AllowedPeers(anyone=True, source=source, entries=['any'])
    addresses, networks, named = set(), [], []
    for entry in entries:
        try:
            network = _network(entry)
        except ValueError:
            raise ValueError(f"{source}: {entry!r} is not an IP address or network "
                             f"(such as 10.0.0.1 or 10.0.0.0/8)") from None
        if network.num_addresses > 1:
            networks.append(network)
            named.append(str(network))
            continue
        address = str(network.network_address)
        named.append(address)
        addresses.add(address)
        if network.version == 4:
            addresses.add('::ffff:' + address)
    return AllowedPeers(addresses, networks, source=source, entries=named)


def peer_allowed(sockaddr, allowed):
    """Whether the peer at *sockaddr* (as accept() returns it) may talk to us.

    *allowed* is what ``allowed_peers`` returns; None lets everyone in.
    Unix-socket peers are always allowed: the socket file's permissions
    guard them. IPv4-mapped IPv6 peers (::ffff:a.b.c.d) match their IPv4
    form.
    """
    if allowed is None or allowed.anyone or not isinstance(sockaddr, tuple):
        return True
    host = sockaddr[0]
    if host in allowed.addresses:
        return True
    import ipaddress
    try:
        ip = ipaddress.ip_address(host.partition('%')[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip) in allowed.addresses or any(ip in network for network in allowed.networks)
