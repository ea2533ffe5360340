"""gateway.validate against wsgiref.validate: the same verdicts, clearer
messages, PEP 3333's read() allowed, and checks that survive python -O."""

import ast
import io
import os
import subprocess
import sys
import warnings
import wsgiref.util
import wsgiref.validate as std_validate

import pytest

import gateway.validate as gw_validate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VALIDATORS = [std_validate, gw_validate]


def make_environ(body=b'', **extra):
    environ = {'QUERY_STRING': '', 'CONTENT_LENGTH': str(len(body)) if body else ''}
    wsgiref.util.setup_testing_defaults(environ)
    environ['wsgi.input'] = io.BytesIO(body)
    environ.update(extra)
    return environ


def call(module, app, environ=None):
    """Run *app* behind *module*'s validator; return (status, headers, body)."""
    environ = make_environ() if environ is None else environ
    seen = {}
    written = []

    def start_response(status, headers, exc_info=None):
        seen['status'], seen['headers'] = status, headers
        return written.append

    result = module.validator(app)(environ, start_response)
    try:
        body = b''.join(result)
    finally:
        result.close()
    return seen.get('status'), seen.get('headers'), b''.join(written) + body


def failure(module, app, environ=None):
    """The AssertionError *module*'s validator raises for *app*."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', std_validate.WSGIWarning)
        warnings.simplefilter('ignore', gw_validate.WSGIWarning)
        with pytest.raises(AssertionError) as info:
            call(module, app, environ)
    return str(info.value)


# -- applications both validators accept --------------------------------------

def plain(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'hello']


def uses_write(environ, start_response):
    write = start_response('200 OK', [('Content-Type', 'text/plain')])
    write(b'written ')
    return [b'returned']


def reads_sized(environ, start_response):
    stream = environ['wsgi.input']
    first = stream.read(3)
    line = stream.readline()
    rest = stream.readlines()
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [first, b'|', line, b'|'] + rest


def iterates_input(environ, start_response):
    lines = list(environ['wsgi.input'])
    environ['wsgi.errors'].write('%d lines\n' % len(lines))
    environ['wsgi.errors'].writelines(['a\n', 'b\n'])
    environ['wsgi.errors'].flush()
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return lines


def no_content(environ, start_response):
    start_response('204 No Content', [])
    return []


def generator(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain'), ('X-Multi', 'a'), ('X-Multi', 'b')])
    yield b'one'
    yield b'two'


def recovers(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    try:
        raise ValueError('handled')
    except ValueError:
        start_response('500 Internal Server Error', [('Content-Type', 'text/plain')],
                       sys.exc_info())
    return [b'recovered']


GOOD = [plain, uses_write, reads_sized, iterates_input, no_content, generator, recovers]


@pytest.mark.parametrize('app', GOOD, ids=lambda app: app.__name__)
def test_good_apps_pass_both_validators(app):
    body = b'abcdef\nsecond line\nthird\n'
    results = [call(module, app, make_environ(body)) for module in VALIDATORS]
    assert results[0] == results[1]
    assert results[1][0][:3] in ('200', '204', '500')


def test_read_without_size_passes_ours_only():
    def read_all(environ, start_response):
        body = environ['wsgi.input'].read()
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [body]

    assert call(gw_validate, read_all, make_environ(b'the body')) == (
        '200 OK', [('Content-Type', 'text/plain')], b'the body')
    # wsgiref's InputWrapper.read asserts len(args) == 1, with no message.
    with pytest.raises(AssertionError, match='^$'):
        call(std_validate, read_all, make_environ(b'the body'))


def test_read_with_negative_size_reads_the_rest_as_read_does():
    def read_rest(environ, start_response):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [environ['wsgi.input'].read(-1)]

    assert call(gw_validate, read_rest, make_environ(b'xyz'))[2] == b'xyz'


def test_read_none_is_refused_with_the_reason():
    # PEP 3333 has read(size) and read(); servers whose read takes an int
    # (mod_wsgi) raise TypeError on None. wsgiref lets it through.
    def read_none(environ, start_response):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [environ['wsgi.input'].read(None)]

    assert call(std_validate, read_none, make_environ(b'xyz'))[2] == b'xyz'
    message = failure(gw_validate, read_none, make_environ(b'xyz'))
    assert 'None' in message and 'read()' in message


# -- applications both validators refuse ---------------------------------------

def returns_bytes(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return b'not a list'


def returns_none(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])


def no_content_type(environ, start_response):
    start_response('200 OK', [])
    return [b'x']


def content_type_on_204(environ, start_response):
    start_response('204 No Content', [('Content-Type', 'text/plain')])
    return []


def status_not_str(environ, start_response):
    start_response(b'200 OK', [('Content-Type', 'text/plain')])
    return []


def status_short_code(environ, start_response):
    start_response('20 OK', [('Content-Type', 'text/plain')])
    return []


def status_below_100(environ, start_response):
    start_response('099 Odd', [('Content-Type', 'text/plain')])
    return []


def headers_not_list(environ, start_response):
    start_response('200 OK', (('Content-Type', 'text/plain'),))
    return []


def header_not_tuple(environ, start_response):
    start_response('200 OK', [['Content-Type', 'text/plain']])
    return []


def header_three_items(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain', 'extra')])
    return []


def header_status(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Status', '200 OK')])
    return []


def header_name_colon(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain'), ('X-A:b', 'v')])
    return []


def header_name_trailing_dash(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain'), ('X-A-', 'v')])
    return []


def header_value_crlf(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain'), ('X-A', 'v\r\nSet-Cookie: x=1')])
    return []


def write_str(environ, start_response):
    write = start_response('200 OK', [('Content-Type', 'text/plain')])
    write('text')
    return []


def yields_str(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return ['text']


def keyword_start_response(environ, start_response):
    start_response(status='200 OK', headers=[('Content-Type', 'text/plain')])
    return []


def closes_input(environ, start_response):
    environ['wsgi.input'].close()


def closes_errors(environ, start_response):
    environ['wsgi.errors'].close()


def errors_write_bytes(environ, start_response):
    environ['wsgi.errors'].write(b'bytes')


def read_two_arguments(environ, start_response):
    environ['wsgi.input'].read(1, 2)


def body_before_start_response(environ, start_response):
    return [b'too early']


def exc_info_not_tuple(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')], ['not', 'a', 'tuple'])
    return []


BAD = {
    returns_bytes: 'string',
    returns_none: 'iterator',
    no_content_type: 'Content-Type',
    content_type_on_204: '204',
    status_not_str: "b'200 OK'",
    status_short_code: "'20'",
    status_below_100: '99',
    headers_not_list: 'list',
    header_not_tuple: 'tuple',
    header_three_items: 'extra',
    header_status: 'Status',
    header_name_colon: 'X-A:b',
    header_name_trailing_dash: 'X-A-',
    header_value_crlf: 'control character',
    write_str: "'text'",
    yields_str: "'text'",
    keyword_start_response: 'keyword',
    closes_input: 'input.close()',
    closes_errors: 'errors.close()',
    errors_write_bytes: "b'bytes'",
    read_two_arguments: '(1, 2)',
    body_before_start_response: 'start_response',
    exc_info_not_tuple: 'tuple',
}


@pytest.mark.parametrize('app', list(BAD), ids=lambda app: app.__name__)
def test_bad_apps_fail_both_validators_ours_saying_why(app):
    failure(std_validate, app)
    message = failure(gw_validate, app)
    assert BAD[app] in message


def test_our_messages_name_what_wsgiref_leaves_unsaid():
    # wsgiref raises a bare AssertionError for these.
    assert failure(std_validate, header_three_items) == ''
    assert failure(std_validate, read_two_arguments) == ''
    assert failure(std_validate, write_str) == ''
    assert 'bytes' in failure(gw_validate, write_str)
    assert 'at most one argument' in failure(gw_validate, read_two_arguments)


# -- what wsgiref misses or reports with the wrong exception ---------------------

@pytest.mark.parametrize('status', ['200 OK\r\nSet-Cookie: stolen=1', '200 O\x00K', '200 OK\x7f'])
def test_control_characters_in_status_are_refused(status):
    std_validate.check_status(status)      # wsgiref lets it through
    with pytest.raises(AssertionError, match='control character'):
        gw_validate.check_status(status)


def test_del_in_header_value_is_refused():
    headers = [('X-A', 'a\x7fb')]
    std_validate.check_headers(headers)
    with pytest.raises(AssertionError, match=r"'\\x7f'"):
        gw_validate.check_headers(headers)


@pytest.mark.parametrize('status', ['abc OK', '', '   ', '2x0 OK'])
def test_malformed_status_is_an_assertion_not_a_crash(status):
    with pytest.raises((ValueError, IndexError), match='invalid literal|out of range'):
        std_validate.check_status(status)
    with pytest.raises(AssertionError, match='Status code'):
        gw_validate.check_status(status)


def test_bad_environ_values_are_assertions():
    environ = make_environ(CONTENT_LENGTH='ten')
    with pytest.raises(ValueError, match="invalid literal for int\\(\\) with base 10: 'ten'"):
        std_validate.check_environ(environ)
    with pytest.raises(AssertionError, match="'ten'"):
        gw_validate.check_environ(make_environ(CONTENT_LENGTH='ten'))

    environ = make_environ()
    del environ['wsgi.url_scheme']
    with pytest.raises(KeyError, match='wsgi.url_scheme'):
        std_validate.check_environ(dict(environ))
    with pytest.raises(AssertionError, match='wsgi.url_scheme'):
        gw_validate.check_environ(environ)


def test_environ_checks_agree_with_wsgiref():
    cases = [
        (dict(SCRIPT_NAME='/'), "SCRIPT_NAME cannot be '/'"),
        (dict(PATH_INFO='relative'), "PATH_INFO doesn't start with /"),
        (dict(HTTP_CONTENT_TYPE='text/plain'), 'should not have the key: HTTP_CONTENT_TYPE'),
        (dict(CONTENT_LENGTH='-1'), "Invalid CONTENT_LENGTH: '-1'"),
        (dict(REQUEST_METHOD=b'GET'), 'REQUEST_METHOD is not a string'),
    ]
    for extra, message in cases:
        for module in VALIDATORS:
            with pytest.raises(AssertionError, match=message):
                module.check_environ(make_environ(**extra))
    with pytest.raises(AssertionError, match='not of the right type'):
        gw_validate.check_environ(list(make_environ().items()))


def test_warnings_are_the_same():
    for module in VALIDATORS:
        environ = make_environ(REQUEST_METHOD='BREW')
        del environ['QUERY_STRING']
        with pytest.warns(module.WSGIWarning) as record:
            module.check_environ(environ)
        assert len(record) == 2
        with pytest.warns(module.WSGIWarning, match='three-digit'):
            module.check_status('200')


def test_iterator_left_unclosed_is_reported(capsys):
    iterator = gw_validate.IteratorWrapper(iter([b'x']), None)
    with pytest.raises(AssertionError, match='without being closed'):
        iterator.__del__()
    iterator.close()
    assert 'without being closed' in capsys.readouterr().err


def test_partial_iterator_wrapper_checks_its_items():
    wrapper = gw_validate.PartialIteratorWrapper([b'a', 'b'])
    iterator = iter(wrapper)
    assert next(iterator) == b'a'
    with pytest.raises(AssertionError, match="'b'"):
        next(iterator)
    iterator.close()


def test_regex_attributes_exist_and_agree():
    assert gw_validate.header_re.search('X-Good_1')
    assert not gw_validate.header_re.search('1-Bad')
    assert gw_validate.bad_header_value_re.search('a\x7f')
    assert std_validate.header_re.pattern == gw_validate.header_re.pattern


def test_no_assert_statements_in_the_module():
    with open(gw_validate.__file__, encoding='utf-8') as source:
        tree = ast.parse(source.read())
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.Assert)]


def run_python(code, *flags):
    return subprocess.run([sys.executable, *flags, '-c', code], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_checks_survive_python_O():
    code = (
        "import gateway.validate as v\n"
        "assert False, 'asserts run: not optimised'\n"
        "for check in (lambda: v.check_headers([('X-Evil', 'a\\r\\nSet-Cookie: x=1')]),\n"
        "              lambda: v.check_status('200 OK\\r\\nSet-Cookie: x=1')):\n"
        "    try:\n"
        "        check()\n"
        "    except AssertionError as error:\n"
        "        print('refused:', error)\n"
        "    else:\n"
        "        print('ACCEPTED')\n"
    )
    result = run_python(code, '-O')
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('refused:') == 2 and 'ACCEPTED' not in result.stdout


def test_import_is_cheap():
    code = ("import sys; before = set(sys.modules); import gateway.validate; "
            "print(sorted(set(sys.modules) - before))")
    result = run_python(code, '-S')
    assert result.returncode == 0, result.stderr
    assert "'re'" not in result.stdout and 'gateway.validate' in result.stdout
