"""WSGI-related types for static type checking (the ``wsgiref.types`` API)."""

from collections.abc import Callable
from types import TracebackType
from typing import Any, Dict, Iterable, Iterator, List, Optional, Protocol, Tuple, Type

__all__ = [
    "StartResponse",
    "WSGIEnvironment",
    "WSGIApplication",
    "InputStream",
    "ErrorStream",
    "FileWrapper",
]

_ExcInfo = Tuple[Type[BaseException], BaseException, TracebackType]
_OptExcInfo = Tuple[Optional[Type[BaseException]], Optional[BaseException], Optional[TracebackType]]


class StartResponse(Protocol):
    """start_response() callable as defined in PEP 3333"""

    def __call__(
        self,
        status: str,
        headers: List[Tuple[str, str]],
        exc_info: Optional[_OptExcInfo] = ...,
        /,
    ) -> Callable[[bytes], object]: ...


WSGIEnvironment = Dict[str, Any]
WSGIApplication = Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]


class InputStream(Protocol):
    """WSGI input stream as defined in PEP 3333"""

    def read(self, size: int = ..., /) -> bytes: ...
    def readline(self, size: int = ..., /) -> bytes: ...
    def readlines(self, hint: int = ..., /) -> List[bytes]: ...
    def __iter__(self) -> Iterator[bytes]: ...


class ErrorStream(Protocol):
    """WSGI error stream as defined in PEP 3333"""

    def flush(self) -> object: ...
    def write(self, s: str, /) -> object: ...
    def writelines(self, seq: List[str], /) -> object: ...


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...
    # Optional: def close(self) -> object: ...


class FileWrapper(Protocol):
    """WSGI file wrapper as defined in PEP 3333"""

    def __call__(
        self, file: _Readable, block_size: int = ..., /,
    ) -> Iterable[bytes]: ...
