"""Static types of PEP 3333's objects, for type checkers (the ``wsgiref.types`` API).

Nothing here runs: an application annotated with these names is checked
against the interface a server offers, whichever server that is.
"""

from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Dict, List, Optional, Protocol, Tuple, Type, Union

__all__ = ['StartResponse', 'WSGIEnvironment', 'WSGIApplication', 'InputStream', 'ErrorStream',
           'FileWrapper']

# What sys.exc_info() gives: an exception in flight, or three Nones.
_ExcInfo = Tuple[Type[BaseException], BaseException, TracebackType]
_OptExcInfo = Union[_ExcInfo, Tuple[None, None, None]]


class StartResponse(Protocol):
    """The ``start_response`` callable a server passes to an application."""

    def __call__(self, status: str, headers: List[Tuple[str, str]],
                 exc_info: Optional[_OptExcInfo] = ..., /) -> Callable[[bytes], object]: ...


# The environ: CGI variables as str, wsgi.* keys with their own types.
WSGIEnvironment = Dict[str, Any]

# An application: called with the environ and start_response, it returns
# the body as an iterable of bytes.
WSGIApplication = Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]


class InputStream(Protocol):
    """``wsgi.input``: the request body, read as a binary stream."""

    def read(self, size: int = ..., /) -> bytes: ...

    def readline(self, size: int = ..., /) -> bytes: ...

    def readlines(self, hint: int = ..., /) -> List[bytes]: ...

    def __iter__(self) -> Iterator[bytes]: ...


class ErrorStream(Protocol):
    """``wsgi.errors``: the server's log, written as text."""

    def flush(self) -> object: ...

    def write(self, s: str, /) -> object: ...

    def writelines(self, seq: List[str], /) -> object: ...


class _Readable(Protocol):
    # All wsgi.file_wrapper needs of a file; close() is used when present.
    def read(self, size: int = ..., /) -> bytes: ...


class FileWrapper(Protocol):
    """``wsgi.file_wrapper``: makes a response iterable of a file."""

    def __call__(self, file: _Readable, block_size: int = ..., /) -> Iterable[bytes]: ...
