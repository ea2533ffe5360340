"""The answers the FastCGI server gives on its own account, in place of the
application's: whole CGI responses (``Status:`` and headers, then a short
text body), ready to be sent as a request's STDOUT."""


def plain_answer(status, text):
    body = text.encode('ascii') + b'\n'
    return (b'Status: %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n'
            % (status.encode('ascii'), len(body))) + body


def status_of(answer):
    """'408 Request Timeout', of one of these answers."""
    return answer[8:answer.index(b'\r\n')].decode('ascii')


def outcome_of(answer):
    """(status, body bytes) of one of these answers, for the access log."""
    return status_of(answer), len(answer.partition(b'\r\n\r\n')[2])


# --request-read-timeout: the request did not all come in time.
REQUEST_TIMEOUT = plain_answer('408 Request Timeout',
                               'Request Timeout: the request did not arrive in time.')
# --max-body-size: the body is larger than the server takes.
CONTENT_TOO_LARGE = plain_answer('413 Content Too Large',
                                 'Content Too Large: the request body is over the limit.')
# --timeout: the application did not answer in time.
GATEWAY_TIMEOUT = plain_answer('504 Gateway Timeout',
                               'Gateway Timeout: the application did not answer in time.')
