"""The scoreboard (gateway/fastcgi/scoreboard.py): what each worker thread
is doing, in memory shared across fork, and the pool's counters."""

import os
import socket
import sys
import time

import pytest

from support.helpers import unavailable, wait_until
from gateway.fastcgi import scoreboard
from gateway.fastcgi.client import cgi_params
from gateway.fastcgi.scoreboard import READY, STARTING, Scoreboard


def _clock(value):
    return lambda: value


def test_a_record_reports_the_oldest_request_in_progress():
    board = Scoreboard(1, 3)
    record = board.claim(1)
    try:
        assert record.longest_running(100.0) is None
        record.started(2, cgi_params('/a'), _mono=_clock(100.0))
        record.started(0, cgi_params('/b'), _mono=_clock(101.0))
        assert record.longest_running(106.0) == (2, 6.0)
        assert record.overdue(106.0, 5.5) == [(2, 6.0)]
        assert record.busy() == 2
        record.finished(2)
        assert record.longest_running(106.0)[0] == 0
        record.finished(0)
        assert record.longest_running(106.0) is None and record.busy() == 0
    finally:
        board.close()


def test_what_a_forked_worker_writes_the_arbiter_reads():
    board = Scoreboard(2, 2)
    record = board.claim(7, generation=3)
    try:
        pid = os.fork()
        if pid == 0:
            record.started(1, cgi_params('/done', method='POST', body=b'12345'))
            record.finished(1)
            record.started(1, cgi_params('/stuck', query='x=1'), _mono=_clock(42.0))
            record.publish()
            os._exit(0)
        record.set_header(pid=pid)
        assert os.waitpid(pid, 0)[1] == 0
        assert record.longest_running(50.0) == (1, 8.0)
        assert record.header()[:4] == (pid, 7, STARTING, 3)
        row = record.slot(1)
        assert (row['request method'], row['request uri'], row['requests']) == \
            ('GET', '/stuck?x=1', 2)
        assert row['last duration'] > 0 and row['last cpu'] >= 0
        assert board.accepted() == 2 and board.busy_slots() == 1
    finally:
        board.close()


def test_the_end_of_a_request_keeps_what_it_was_and_ends_it_once():
    board = Scoreboard(1, 1)
    record = board.claim(1)
    long_uri = '/' + 'x' * 1000
    record.started(0, cgi_params(long_uri, method='PUT', body=b'abc'), _mono=_clock(1.0))
    record.finished(0)
    record.publish()
    first = record.slot(0)
    assert first['running since'] == 0.0 and first['last duration'] > 1.0
    assert first['request method'] == 'PUT' and first['content length'] == 3
    assert first['request uri'] == long_uri[:scoreboard.URI_BYTES]
    record.finished(0)      # the worker answered it overdue, then its thread came back
    record.publish()
    assert record.slot(0) == first
    board.close()


def test_the_publisher_thread_copies_the_slots_while_the_worker_runs():
    board = Scoreboard(1, 2)
    record = board.claim(1)
    record.start_publishing(interval=0.01)
    try:
        record.started(1, cgi_params('/hung', method='DELETE'))
        row = wait_until(lambda: record.slot(1)['request uri'] == '/hung' and record.slot(1),
                         what='the running request published')
        assert row['request method'] == 'DELETE' and row['running since'] > 0
        assert row['request start'] > 1e9      # the wall clock
    finally:
        record.stop_publishing()
        board.close()


def test_records_are_claimed_and_released_and_their_requests_kept():
    board = Scoreboard(1, 1)
    first = board.claim(1)
    first.started(0, cgi_params('/'))
    first.finished(0)
    first.publish()
    first.count_slow()
    spare = board.claim(2)     # every record taken: one of its own, not shown
    assert spare.index is None and board.live() == [first]
    board.release(spare)
    board.release(first)
    assert board.live() == [] and board.accepted() == 1 and board.slow_requests() == 1
    again = board.claim(3)
    assert again.index == 0 and again.slot(0)['requests'] == 0
    board.close()


def _linux_listener(backlog):
    if not sys.platform.startswith('linux'):
        unavailable('TCP_INFO on a listening socket is read on Linux only')
    listener = socket.create_server(('127.0.0.1', 0), backlog=backlog)
    return listener


def test_the_listen_queue_is_read_from_the_kernel():
    listener = _linux_listener(7)
    clients = [socket.create_connection(listener.getsockname()) for _ in range(3)]
    try:
        assert scoreboard.accept_queues([listener]) == (3, 7, True)
        listener.accept()[0].close()
        assert scoreboard.accept_queues([listener]) == (2, 7, True)
    finally:
        for sock in clients + [listener]:
            sock.close()


def test_sampling_keeps_the_maxima_and_counts_a_saturated_pool_once():
    listener = _linux_listener(5)
    board = Scoreboard(2, 1)
    record = board.claim(1)
    record.set_header(state=READY)
    try:
        board.sample([listener])
        assert board.counters()['max_active'] == 0
        record.started(0, cgi_params('/'))
        clients = [socket.create_connection(listener.getsockname()) for _ in range(2)]
        for _ in range(3):
            assert board.sample([listener]) == (1, 1, 2)
        counters = board.counters()
        assert (counters['max_active'], counters['max_listen_queue'],
                counters['listen_queue_len'], counters['max_children_reached']) == (1, 2, 5, 1)
        record.finished(0)
        for sock in clients:
            sock.close()
    finally:
        listener.close()
        board.close()


@pytest.mark.parametrize('workers, threads, capacity', [(1, 1, 4), (4, 8, 10)])
def test_room_for_every_worker_and_its_replacement(workers, threads, capacity):
    class Config:
        pass
    config = Config()
    config.workers, config.threads = workers, threads
    board = Scoreboard.for_config(config)
    assert board.capacity == capacity and board.threads == threads
    board.close()


def _spin(seconds):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_requests_cpu_is_its_own_not_what_the_thread_did_between():
    board = Scoreboard(1, 1)
    record = board.claim(1)
    on_request = record.request_callback(0, [0])
    on_request(cgi_params('/first'))
    on_request(None)
    _spin(0.05)                 # the worker's own work between two requests
    on_request(cgi_params('/second'))
    _spin(0.01)
    on_request(None)
    record.publish()
    row = record.slot(0)
    # One thread cannot spend more CPU than the time that passed.
    assert 0.005 < row['last cpu'] <= row['last duration']
    assert row['request uri'] == '/second' and row['requests'] == 2
    board.close()
