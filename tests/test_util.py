"""gateway.util against wsgiref.util: the same answers for generated environs."""

import wsgiref.util as std

from hypothesis import given, settings, strategies as st

import gateway.util as gw

SEGMENT = st.sampled_from(['', '.', '..', 'a', 'b c', 'caf\xe9', '%2F', 'x;y=1,z'])
PATH = st.lists(SEGMENT, max_size=5).map(lambda parts: ''.join('/' + part for part in parts))


@st.composite
def environs(draw):
    environ = {'wsgi.url_scheme': draw(st.sampled_from(['http', 'https'])),
               'SERVER_NAME': draw(st.sampled_from(['example.org', '127.0.0.1'])),
               'SERVER_PORT': draw(st.sampled_from(['80', '443', '8080']))}
    for key, values in (('HTTP_HOST', st.sampled_from(['', 'h.example', 'h.example:81'])),
                        ('SCRIPT_NAME', PATH), ('PATH_INFO', PATH),
                        ('QUERY_STRING', st.sampled_from(['', 'a=1', 'a b&c=%20']))):
        if draw(st.booleans()):
            environ[key] = draw(values)
    return environ


@settings(max_examples=300)
@given(environs(), st.booleans())
def test_uris_match_wsgiref(environ, include_query):
    assert gw.application_uri(dict(environ)) == std.application_uri(dict(environ))
    assert (gw.request_uri(dict(environ), include_query)
            == std.request_uri(dict(environ), include_query))


@settings(max_examples=300)
@given(PATH, PATH)
def test_shift_path_info_matches_wsgiref(script, path):
    ours, theirs = {'SCRIPT_NAME': script, 'PATH_INFO': path}, {'SCRIPT_NAME': script,
                                                              'PATH_INFO': path}
    for _ in range(4):
        assert gw.shift_path_info(ours) == std.shift_path_info(theirs)
        assert ours == theirs


@given(st.dictionaries(st.sampled_from(['HTTPS', 'SERVER_NAME', 'SCRIPT_NAME', 'PATH_INFO',
                                        'wsgi.url_scheme', 'SERVER_PORT']),
                       st.sampled_from(['on', 'off', '1', 'https', '', 'x'])))
def test_defaults_and_scheme_match_wsgiref(environ):
    ours, theirs = dict(environ), dict(environ)
    gw.setup_testing_defaults(ours)
    std.setup_testing_defaults(theirs)
    for streams in (ours, theirs):
        assert streams.pop('wsgi.input').read() == b''
        assert streams.pop('wsgi.errors').getvalue() == ''
    assert ours == theirs
    assert gw.guess_scheme(environ) == std.guess_scheme(environ)


def test_file_wrapper_and_hop_by_hop():
    import io
    assert list(gw.FileWrapper(io.BytesIO(b'abcdefg'), 3)) == [b'abc', b'def', b'g']
    closed = io.BytesIO(b'x')
    gw.FileWrapper(closed).close()
    assert closed.closed
    for name in ('Connection', 'KEEP-ALIVE', 'te', 'Content-Type', 'Status'):
        assert gw.is_hop_by_hop(name) == std.is_hop_by_hop(name)
