"""The FastCGI adaptor (gateway.handlers.fastcgi) over a scripted channel.

FastCGIHandler talks only to its channel: read, write, stderr, finish,
abort. A FakeChannel plays the connection's part here, so the handler's own
rules (the CGI environ, what is buffered for END_REQUEST, when the abort
check runs, when a response is given up) are seen without a codec or a
socket.
"""

import subprocess
import sys

import pytest

from apps import wsgi_apps
from gateway.handlers.fastcgi import (FastCGIHandler, RecordErrors, RequestAborted, RequestInput,
                                      ServerLog)
from support.fake_transport import FakeChannel
from support.helpers import REPO

PARAMS = {'REQUEST_METHOD': 'GET', 'SERVER_PROTOCOL': 'HTTP/1.1', 'SCRIPT_NAME': '',
          'PATH_INFO': '/x', 'QUERY_STRING': '', 'SERVER_NAME': 'localhost', 'SERVER_PORT': '80'}


def run(app, channel=None, errors=None, **params):
    channel = channel or FakeChannel()
    handler = FastCGIHandler(channel, {**PARAMS, **params}, errors or ServerLog(), False, True)
    handler.run(app)
    return channel


def body_of(data):
    return data.partition(b'\r\n\r\n')[2]


def test_a_list_response_goes_out_whole_with_end_request():
    channel = run(wsgi_apps.hello)
    assert [call[0] for call in channel.calls] == ['finish']
    assert channel.calls[0][1].startswith(b'Status: 200 OK\r\n')


def test_a_streamed_response_is_written_block_by_block_and_checked_between():
    def streams(environ, start_response):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        yield b'one'
        yield b'two'
    channel = run(streams)
    kinds = [call[0] for call in channel.calls]
    assert kinds == ['write', 'write', 'finish']
    assert body_of(channel.sent()) == b'onetwo' and channel.calls[-1][1] == b''


def test_the_last_block_of_a_declared_length_waits_for_end_request():
    def streams(environ, start_response):
        start_response('200 OK', [('Content-Length', '6')])
        yield b'one'
        yield b'two'
    channel = run(streams)
    assert [call[0] for call in channel.calls] == ['write', 'finish']
    assert channel.calls[-1][1] == b'two'


def test_an_abort_noticed_between_blocks_ends_the_response_quietly():
    closed = []

    class Aborting(FakeChannel):
        def write(self, data):
            FakeChannel.write(self, data)
            raise RequestAborted(1)

    def streams(environ, start_response):
        start_response('200 OK', [])
        return wsgi_apps.ClosingIterable([b'a', b'b', b'c'], closed)
    channel = run(streams, Aborting())
    assert closed and [call[0] for call in channel.calls] == ['write']


@pytest.mark.parametrize('streamed', [False, True], ids=['list', 'generator'])
def test_a_head_answer_is_the_gets_headers_and_no_body(streamed):
    # As PHP-FPM answers: some web servers pass on what follows the headers
    # as it comes (HAProxy answered 502 to a body after HEAD). A CGI program
    # leaves that to its web server (test_handlers_fixes, 2.).
    def app(environ, start_response):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        blocks = [b'x' * 5000]
        return iter(blocks) if streamed else blocks
    get, head = run(app).sent(), run(app, REQUEST_METHOD='HEAD').sent()
    length = b'' if streamed else b'Content-Length: 5000\r\n'
    assert get == b'Status: 200 OK\r\nContent-Type: text/plain\r\n%s\r\n%s' % (length, b'x' * 5000)
    assert head == get.partition(b'\r\n\r\n')[0] + b'\r\n\r\n'


@pytest.mark.parametrize('status', ['204 No Content', '304 Not Modified'])
def test_no_body_after_204_or_304(status):
    def app(environ, start_response):
        start_response(status, [])
        return [b'ignored']
    assert run(app).sent() == b'Status: %s\r\n\r\n' % status.encode()


def test_an_error_after_the_headers_gives_up_the_response():
    channel = run(wsgi_apps.error_after_body)
    kinds = [call[0] for call in channel.calls]
    assert kinds[-1] == 'abort' and 'finish' not in kinds


def test_a_body_shorter_than_declared_gives_up_the_response():
    channel = run(wsgi_apps.too_short)
    # Then finish() comes too, which the connection ignores after abort().
    kinds = [call[0] for call in channel.calls]
    assert 'abort' in kinds and kinds.index('abort') < kinds.index('finish')


def test_a_block_crossing_the_declared_length_is_cut_at_it():
    assert body_of(run(wsgi_apps.crosses_length).sent()) == b'12345'


def test_an_application_error_before_the_headers_is_a_500_and_one_log_line(gateway_log):
    channel = run(wsgi_apps.error_before_start)
    assert channel.sent().startswith(b'Status: 500 Internal Server Error\r\n')
    assert 'the application raised' in gateway_log.text


def test_the_environ_follows_the_cgi_rules():
    seen = {}

    def looks(environ, start_response):
        seen.update(environ)
        start_response('200 OK', [])
        return [b'']
    run(looks, HTTP_PROXY='http://attacker.invalid', HTTP_CONTENT_TYPE='text/evil',
        HTTP_CONTENT_LENGTH='9', HTTP_HOST='example.org')
    assert not {'HTTP_PROXY', 'HTTP_CONTENT_TYPE', 'HTTP_CONTENT_LENGTH'} & set(seen)
    assert seen['HTTP_HOST'] == 'example.org' and seen['wsgi.multiprocess'] is True
    assert seen['wsgi.run_once'] is False


def test_params_that_are_no_cgi_request_are_a_500_without_running_the_application():
    ran = []
    channel = run(lambda e, s: ran.append(1), REQUEST_METHOD='')
    assert not ran and channel.sent().startswith(b'Status: 500 ')


def test_the_body_is_read_block_by_block_as_asked():
    channel = FakeChannel([b'ab\ncd', b'ef\n', b'gh'])
    stream = RequestInput(channel)
    assert stream.read(1) == b'a' and channel.reads == 1
    assert stream.readline() == b'b\n'
    assert stream.readline() == b'cdef\n' and channel.reads == 2
    assert stream.read() == b'gh' and stream.read() == b'' and stream.readline() == b''
    assert channel.reads == 4       # the end, once: nothing is read past it
    assert stream.read(5) == b'' and channel.reads == 4


def test_a_read_the_web_server_aborts_raises_request_aborted():
    stream = RequestInput(FakeChannel([b'abc'], abort_at_read=2))
    assert stream.read(3) == b'abc'
    with pytest.raises(RequestAborted):
        stream.read()


def test_wsgi_errors_to_the_log_by_line_or_to_stderr_records(gateway_log):
    log = ServerLog()
    log.write('one\ntw')
    log.writelines(['o\n'])
    log.write('three')
    log.flush()
    assert [r.getMessage() for r in gateway_log.records] == ['one', 'two', 'three']
    channel = FakeChannel()
    RecordErrors(channel).write('caf\xe9 \udcff\n')
    assert channel.calls == [('stderr', b'caf\xc3\xa9 \\udcff\n')]


def test_importing_the_adaptor_imports_no_server():
    code = ("import sys\nimport gateway.handlers.fastcgi\n"
            "print(sorted(m for m in sys.modules if m.startswith('gateway.fastcgi')))\n")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         cwd=REPO, timeout=30, check=True).stdout
    assert out.strip() == '[]'
    code = "from gateway.handlers.fastcgi import WSGIServer; print(WSGIServer.__module__)"
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         cwd=REPO, timeout=30, check=True).stdout
    assert out.strip() == 'gateway.fastcgi.compat'


def test_the_handler_never_touches_its_connection():
    # Only the channel's five calls: nothing else of it is read or set.
    class Strict(FakeChannel):
        def __getattribute__(self, name):
            assert name in ('read', 'write', 'stderr', 'finish', 'abort', 'calls', 'blocks',
                            'reads', 'abort_at_read', 'sent', '__class__', '__dict__'), name
            return object.__getattribute__(self, name)
    channel = run(wsgi_apps.too_long, Strict(), errors=RecordErrors(Strict()))
    assert body_of(object.__getattribute__(channel, 'sent')()) == b'12345'
