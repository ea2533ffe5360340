"""Where the FastCGI server listens, and who may talk to it.

* ``--bind`` addresses: ``HOST:PORT`` (IPv4), ``[V6ADDR]:PORT`` (IPv6 only),
  ``unix:PATH`` and ``fd://N`` (a listening socket inherited from whoever
  started us).
* fd 0 when no address is given: web servers that spawn FastCGI processes
  themselves (mod_fcgid, spawn-fcgi, lighttpd) hand over a *listening* socket
  there (FCGI_LISTENSOCK_FILENO); IIS hands over *one connection* (a named
  pipe on Windows; a connected socket stands in for it on POSIX).
* ``FCGI_WEB_SERVER_ADDRS`` (--web-server-addrs): the web servers allowed
  to connect over TCP, required for a listener on every interface.

Sockets are opened once, in the supervisor, so that every worker accepts on
the same ones and they outlive any worker.
"""

import errno
import os
import socket
import stat
import sys
from collections import namedtuple

from .peers import AllowedPeers, allowed_peers, peer_allowed  # noqa: F401 (part of this API)

try:
    import grp
except ImportError:     # Windows: no unix sockets to give to a group
    grp = None

__all__ = ['BindSyntaxError', 'UnguardedBindError', 'ListenError', 'BindAddress', 'Listener',
           'parse_bind', 'open_listeners', 'open_listener', 'inherited_listener', 'stdin_kind',
           'take_stdin_listener', 'take_stdin_connection', 'AllowedPeers', 'allowed_peers',
           'peer_allowed', 'listens_everywhere', 'unguarded']

BIND_FORMS = ('HOST:PORT (e.g. 127.0.0.1:9000), [IPV6]:PORT (e.g. [::1]:9000), '
              'unix:PATH (e.g. unix:/run/app/fcgi.sock) or fd://N')


class BindSyntaxError(ValueError):
    """A --bind address that cannot be understood (a usage error)."""


class UnguardedBindError(BindSyntaxError):
    """A TCP listener on every interface, and no --web-server-addrs to say
    who may connect (a usage error)."""


class ListenError(OSError):
    """A listening socket could not be set up; the message says why and,
    where it helps, what to do about it. An OSError, as the socket errors
    that flup-era callers catch."""


# ---------------------------------------------------------------------------
# --bind syntax
# ---------------------------------------------------------------------------

class BindAddress(namedtuple('BindAddress', 'kind target')):
    """A parsed --bind: *kind* is 'inet', 'inet6', 'unix' or 'fd'; *target*
    is ``(host, port)``, a path, or a file descriptor number."""

    __slots__ = ()

    def __str__(self):
        if self.kind == 'inet':
            return '%s:%d' % self.target
        if self.kind == 'inet6':
            return '[%s]:%d' % self.target
        if self.kind == 'unix':
            return 'unix:' + self.target
        return 'fd://%d' % self.target


def _port(text, whole):
    if not text.isdigit() or int(text) > 65535:
        raise BindSyntaxError(f"bad --bind {whole!r}: the port must be a number from 0 to 65535")
    return int(text)


def parse_bind(text):
    """The BindAddress that *text* names; BindSyntaxError if it names none."""
    if not isinstance(text, str) or not text.strip():
        raise BindSyntaxError(f"bad --bind {text!r}: expected {BIND_FORMS}")
    text = text.strip()
    if text.startswith('unix:'):
        path = text[5:]
        if not path:
            raise BindSyntaxError(f"bad --bind {text!r}: unix: needs a path, e.g. unix:/run/app/fcgi.sock")
        if '\0' in path:
            raise BindSyntaxError(f"bad --bind {text!r}: the path contains a NUL byte")
        return BindAddress('unix', path)
    if text.startswith('fd://'):
        number = text[5:]
        if not number.isdigit():
            raise BindSyntaxError(f"bad --bind {text!r}: fd:// needs a file descriptor number, e.g. fd://3")
        return BindAddress('fd', int(number))
    if text.startswith('['):
        host, bracket, port = text[1:].partition(']')
        if not bracket or not port.startswith(':'):
            raise BindSyntaxError(f"bad --bind {text!r}: an IPv6 address is written [ADDRESS]:PORT")
        import ipaddress    # here only: a worker need not hold it
        try:
            ipaddress.IPv6Address(host.partition('%')[0])
        except ValueError:
            raise BindSyntaxError(f"bad --bind {text!r}: {host!r} is not an IPv6 address") from None
        return BindAddress('inet6', (host, _port(port[1:], text)))
    host, colon, port = text.rpartition(':')
    if not colon or not host:
        raise BindSyntaxError(f"bad --bind {text!r}: expected {BIND_FORMS}")
    if ':' in host:
        raise BindSyntaxError(f"bad --bind {text!r}: put an IPv6 address in brackets: [{host}]:{port}")
    return BindAddress('inet', (host, _port(port, text)))


# ---------------------------------------------------------------------------
# Listening sockets
# ---------------------------------------------------------------------------

class Listener:
    """A bound, listening socket, and the socket file to remove at exit when
    we created one."""

    def __init__(self, sock, name, owned_path=None):
        self.sock = sock
        self.name = name
        self.owned_path = owned_path
        # The file we created, so that we never remove a socket another
        # server has put at the same path since.
        self._identity = _identity(owned_path) if owned_path else None

    def __repr__(self):
        return f'<Listener {self.name}>'

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def remove_socket_file(self):
        """After close(): remove the unix socket file we created, unless
        another server has put its own at the same path since (inode
        numbers are reused at once, so a live socket there is not ours)."""
        path = self.owned_path
        if not path or _identity(path) != self._identity:
            return
        try:
            if not _answers(path):
                os.unlink(path)
        except OSError:
            pass    # when in doubt, leave it


def _identity(path):
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def open_listeners(binds, allowed, backlog=1024, unix_mode=None, unix_group=None):
    """Listen on every address of *binds* (--bind texts), or on none: the
    first failure closes those already open. *allowed* (``allowed_peers``)
    None refuses a TCP listener on every interface, before any is bound.
    """
    addresses = [parse_bind(bind) for bind in binds]
    for address in addresses:
        if allowed is None and listens_everywhere(address):
            raise unguarded(f'--bind {address}')
    opened = []
    try:
        for address in addresses:
            opened.append(open_listener(address, backlog, unix_mode, unix_group))
        _refuse_unguarded(opened, allowed)
    except BaseException:
        for listener in opened:
            listener.close()
            listener.remove_socket_file()
        raise
    return opened


def _refuse_unguarded(listeners, allowed):
    # A socket handed over by whoever started us was bound by them: only
    # now can we see where it listens.
    for listener in listeners:
        if allowed is None and listens_everywhere(listener):
            raise unguarded(listener.name)


def open_listener(address, backlog=1024, unix_mode=None, unix_group=None):
    """Bind and listen on *address* (a BindAddress or --bind text).

    Returns a Listener; raises ListenError with a message fit for the user.
    """
    if isinstance(address, str):
        address = parse_bind(address)
    if address.kind == 'fd':
        return inherited_listener(address.target, f'fd://{address.target}')
    if address.kind == 'unix':
        return _open_unix(address.target, backlog, unix_mode, unix_group)
    return _open_inet(address, backlog)


def _open_inet(address, backlog):
    host, port = address.target
    family = socket.AF_INET6 if address.kind == 'inet6' else socket.AF_INET
    try:
        infos = socket.getaddrinfo(_host_bytes(host), port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ListenError(f"cannot listen on {address}: {host!r} is not a local "
                          f"{'IPv6' if family == socket.AF_INET6 else 'IPv4'} address ({error.strerror})") from None
    sockaddr = infos[0][4]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # A restarted server must not wait for old connections in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # [::]:9000 means IPv6 only; bind 0.0.0.0:9000 too for IPv4.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as error:
        sock.close()
        raise ListenError(_bind_failure(address, error)) from None
    return Listener(sock, _describe_inet(sock))


def _describe_inet(sock):
    host, port = sock.getsockname()[:2]
    return f'[{host}]:{port}' if sock.family == socket.AF_INET6 else f'{host}:{port}'


def _bind_failure(address, error):
    if error.errno == errno.EADDRINUSE:
        return f"address already in use: {address} (another server is listening there)"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {address}: no network interface of this machine has that address"
    if error.errno == errno.EACCES and address.kind != 'unix':
        return (f"cannot listen on {address}: permission denied (ports below 1024 need root "
                f"or CAP_NET_BIND_SERVICE)")
    return f"cannot listen on {address}: {error.strerror or error}"


def _group_id(group):
    if isinstance(group, int) or str(group).isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ListenError(f"--unix-group {group!r}: no such group") from None


def _open_unix(path, backlog, mode, group):
    name = 'unix:' + path
    if path.startswith('@') and sys.platform.startswith('linux'):
        # Linux's abstract namespace: no file, so no stale file and no mode.
        return _bind_unix('\0' + path[1:], name, backlog)
    gid = None if group is None else _group_id(group)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ListenError(f"cannot create the socket {name}: the directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ListenError(f"cannot create the socket {name}: the directory {directory} is not writable "
                          f"by this user (uid {os.getuid()}); note that the web server's user also "
                          f"needs search (+x) permission on every parent directory")
    _remove_stale_socket(path, name)
    # The mode is given at creation, by the umask, and nothing acts on the
    # path by name after bind() but lchown(): whoever can write the
    # directory could have put a symlink there by then, and chmod() or
    # chown() would follow it to another file. (fchmod() and fchown() of
    # the socket change the socket's own inode, not the file bind() made.)
    # Until lchown() is done, our own group has what the mode gives the
    # socket's group.
    old_umask = os.umask(0o777 & ~mode) if mode is not None else None
    try:
        listener = _bind_unix(path, name, backlog)
    finally:
        if old_umask is not None:
            os.umask(old_umask)
    if gid is not None:
        try:
            os.lchown(path, -1, gid)
        except OSError as error:
            listener.close()
            os.unlink(path)
            hint = " (this user must be root or a member of that group)" \
                if error.errno == errno.EPERM else ""
            raise ListenError(f"cannot give {name} to group {group}: {error.strerror}{hint}") \
                from None
    listener.owned_path = path
    listener._identity = _identity(path)
    st = os.lstat(path)
    listener.name = f"{name} (mode {stat.S_IMODE(st.st_mode):04o}, {_group_name(st.st_gid)})"
    return listener


def _group_name(gid):
    try:
        return 'group ' + grp.getgrgid(gid).gr_name
    except KeyError:
        return f'gid {gid}'


def _bind_unix(path, name, backlog):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise ListenError(f"address already in use: {name}") from None
        raise ListenError(f"cannot create the socket {name}: {error.strerror or error}") from None
    return Listener(sock, name)


def _remove_stale_socket(path, name):
    """Remove a socket file left by a server that is gone; refuse to touch
    anything else, and anything a live server still answers on."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenError(f"cannot create the socket {name}: {path} exists and is not a socket; "
                          f"refusing to delete it")
    try:
        live = _answers(path)
    except socket.timeout:
        raise ListenError(f"address already in use: {name} (a server holds it but does not answer)") from None
    except OSError as error:
        raise ListenError(f"cannot create the socket {name}: cannot check the existing socket "
                          f"file: {error.strerror}") from None
    if live:
        raise ListenError(f"address already in use: {name} (another server answers on it)")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise ListenError(f"cannot remove the stale socket {path}: {error.strerror}") from None


def _answers(path):
    """Whether a server accepts connections on the unix socket *path*."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False    # nobody listens: a leftover from a server that is gone
    finally:
        probe.close()
    return True


def inherited_listener(fd, origin):
    """The listening socket that file descriptor *fd* already is; *origin*
    says where it came from, for the log and for errors."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError as error:
        raise ListenError(f"{origin}: not an open socket ({error.strerror})") from None
    if sock.type != socket.SOCK_STREAM or not _is_listening(sock):
        sock.close()
        raise ListenError(f"{origin}: the socket is not listening (expected a bound stream socket "
                          f"on which listen() was called)")
    return Listener(sock, f'{_describe_socket(sock)} ({origin})')


def _is_listening(sock):
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    except (OSError, AttributeError):
        pass
    # The classic test (libfcgi, flup): a listening socket has no peer.
    try:
        sock.getpeername()
    except OSError as error:
        return error.errno == errno.ENOTCONN
    return False


def _describe_socket(sock):
    if sock.family == socket.AF_UNIX:
        name = sock.getsockname()
        if isinstance(name, bytes):
            name = '@' + name[1:].decode('utf-8', 'replace')
        return 'unix:' + (name or '?')
    return _describe_inet(sock)


# ---------------------------------------------------------------------------
# fd 0, when no address is given
# ---------------------------------------------------------------------------

def stdin_kind(fd=0):
    """What the web server left on *fd*: 'listening' (a listening socket:
    mod_fcgid, spawn-fcgi, lighttpd), 'connection' (one connected stream:
    IIS's process model) or None (a tty, a pipe, a file, nothing)."""
    if sys.platform == 'win32':
        return 'connection' if _windows_stdin_is_pipe(fd) else None
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return None
    try:
        if sock.type != socket.SOCK_STREAM:
            return None
        if _is_listening(sock):
            return 'listening'
        try:
            sock.getpeername()
        except OSError:
            return None
        return 'connection'
    finally:
        sock.close()


def take_stdin_listener(allowed=None):
    """The listening socket on fd 0 (mod_fcgid, spawn-fcgi, lighttpd);
    *allowed* as for ``open_listeners``."""
    listener = inherited_listener(0, 'fd 0')
    try:
        _refuse_unguarded([listener], allowed)
    except UnguardedBindError:
        listener.close()
        raise
    _stdin_from_devnull()
    return listener


def take_stdin_connection():
    """The one connection on fd 0, as an object with recv/sendall/close: a
    socket, or on Windows the named pipe IIS passes."""
    if sys.platform == 'win32':
        return _PipeStream(0)
    sock = socket.socket(fileno=os.dup(0))
    _stdin_from_devnull()
    return sock


def _stdin_from_devnull():
    # Once the socket on fd 0 is ours, closing our object must really close
    # it, and nothing else in the process may read records as if they were
    # its standard input.
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, 0)
    finally:
        os.close(null)


if sys.platform == 'win32':
    import ctypes
    import msvcrt

    _FILE_TYPE_PIPE = 3
    _ERROR_BROKEN_PIPE = 109
    _ERROR_NO_DATA = 232
    _ERROR_PIPE_NOT_CONNECTED = 233

    def _windows_stdin_is_pipe(fd):
        try:
            handle = msvcrt.get_osfhandle(fd)
        except OSError:
            return False
        get_file_type = ctypes.windll.kernel32.GetFileType
        get_file_type.argtypes = [ctypes.c_void_p]
        get_file_type.restype = ctypes.c_uint32
        return get_file_type(handle) == _FILE_TYPE_PIPE

    class _PipeStream:
        """recv/sendall/close over the duplex named pipe IIS gives as stdin.

        As wfastcgi does: the C runtime descriptor in binary mode (text mode
        would translate line ends inside records), read and written with
        os.read/os.write. The pipe is connected before we start; IIS closing
        its end reads as end of file.
        """

        def __init__(self, fd):
            self._fd = fd
            msvcrt.setmode(fd, os.O_BINARY)

        def fileno(self):
            return -1 if self._fd is None else self._fd

        def recv(self, size):
            try:
                return os.read(self._fd, size)
            except BrokenPipeError:
                return b''
            except OSError as error:
                if getattr(error, 'winerror', None) in (_ERROR_BROKEN_PIPE, _ERROR_NO_DATA,
                                                          _ERROR_PIPE_NOT_CONNECTED):
                    return b''
                raise

        def sendall(self, data):
            view = memoryview(data).cast('B')
            while view:
                written = os.write(self._fd, view)
                view = view[written:]

        def close(self):
            if self._fd is not None:
                fd, self._fd = self._fd, None
                try:
                    os.close(fd)
                except OSError:
                    pass
else:
    def _windows_stdin_is_pipe(fd):
        return False


# ---------------------------------------------------------------------------
# A TCP listener on every interface
# ---------------------------------------------------------------------------

def listens_everywhere(target):
    """Whether *target*, a BindAddress or a Listener, takes connections on
    every interface (0.0.0.0, [::], or a name that resolves to them)."""
    if isinstance(target, Listener):
        if target.sock.family not in (socket.AF_INET, socket.AF_INET6):
            return False
        host = target.sock.getsockname()[0]
    elif target.kind in ('inet', 'inet6'):
        host, port = target.target
        family = socket.AF_INET6 if target.kind == 'inet6' else socket.AF_INET
        try:
            host = socket.getaddrinfo(_host_bytes(host), port, family, socket.SOCK_STREAM, 0,
                                      socket.AI_PASSIVE)[0][4][0]
        except (socket.gaierror, UnicodeError):
            return False    # open_listener says why it cannot listen there
    else:
        return False
    # 0.0.0.0, :: or ::ffff:0.0.0.0, told from the packed address (what
    # ipaddress would say, without its import in every worker).
    host = host.partition('%')[0]
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            packed = socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        if packed[:12] == _IPV4_MAPPED_PREFIX:
            packed = packed[12:]
        return not any(packed)
    return False


_IPV4_MAPPED_PREFIX = bytes(10) + b'\xff\xff'


def _host_bytes(host):
    # getaddrinfo() runs a str host through the IDNA codec, whose import
    # (unicodedata, stringprep) every worker would then hold: an ASCII name
    # or address needs none of it.
    return host.encode('ascii') if isinstance(host, str) and host.isascii() else host


def unguarded(name):
    """The error for a listener on every interface with nobody named to
    connect: *name* is the --bind address or the inherited socket."""
    return UnguardedBindError(
        f"{name} listens on every interface, where anyone who reaches the port could pose as "
        f"the web server (and send the REMOTE_USER, HTTPS and REMOTE_ADDR of their choice): "
        f"say who may connect with --web-server-addrs (or FCGI_WEB_SERVER_ADDRS), e.g. "
        f"10.0.0.0/8, or 'any' to accept everyone")
