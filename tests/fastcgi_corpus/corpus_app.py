"""The application the corpus's expected answers are written against.

``/echo`` reads the whole request body and says how much it read and its
SHA-256; any other path answers ``hello PATH``. Importable by a server
process as ``fastcgi_corpus.corpus_app:application`` from the tests
directory.
"""

import hashlib


def echo_text(body):
    """What /echo answers for *body*."""
    return 'read %d bytes, sha256 %s' % (len(body), hashlib.sha256(body).hexdigest()[:16])


def application(environ, start_response):
    path = environ.get('PATH_INFO', '')
    if path == '/echo':
        text = echo_text(environ['wsgi.input'].read())
    else:
        text = 'hello ' + path
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [text.encode('latin-1')]
