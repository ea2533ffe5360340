"""The pool on real processes: a dynamic pool grows while requests wait and
shrinks back; recycling (--max-requests with its jitter, --max-rss) starts
the replacement, ready, before the worker it replaces stops taking
requests; SIGTTIN and SIGTTOU move a dynamic pool's minimum."""

import re
import signal
import textwrap
import threading

import pytest

from support.helpers import in_background
from support.fcgi_client import ServerProcess, get, pid_alive, wait_until
from gateway import cli

APP = 'apps.fcgiapps:router'

HOLD_APP = textwrap.dedent('''\
    import os, time

    def application(environ, start_response):
        # Held until the test creates the file the query names (at most 30 s).
        flag = environ.get('QUERY_STRING', '')
        deadline = time.monotonic() + 30
        while flag and not os.path.exists(flag) and time.monotonic() < deadline:
            time.sleep(0.01)
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [str(os.getpid()).encode()]
    ''')


def test_the_pool_grows_to_max_workers_while_requests_wait_and_shrinks_back(tmp_path):
    (tmp_path / 'hold.py').write_text(HOLD_APP)
    flag = tmp_path / 'release'
    with ServerProcess(['hold', '--bind', '127.0.0.1:0', '--workers', '1', '--max-workers', '3',
                        '--idle-timeout', '0.5', '--chdir', str(tmp_path)]) as server:
        address = server.address()
        first = server.wait_booted(1)
        held = [in_background(get, address, '/', query=str(flag), timeout=40) for _ in range(4)]
        server.wait_for_log(r'pool: every worker busy and \d+ connection\(s\) waiting; growing '
                            r'to 2 workers \(--max-workers 3\)')
        server.wait_for_log(r'growing to 3 workers')
        grown = server.wait_booted(3)
        flag.write_text('go')
        served_by = {int(reply().body) for reply in held}
        assert served_by <= set(grown) and len(served_by) >= 2
        mark = server.mark()
        server.wait_for_log(r'pool: a worker to spare for 0\.5s \(--idle-timeout\); shrinking '
                            r'to 2 workers', start=mark)
        server.wait_for_log(r'shrinking to 1 worker$', start=mark)
        # Never past --max-workers, never below --workers.
        assert 'growing to 4' not in server.log
        wait_until(lambda: sum(map(pid_alive, grown)) == 1, what='back to one worker')
        assert get(address, '/').status == 200
        assert server.count(r'no longer needed by the pool; stopping it gracefully') == 2
        assert pid_alive(first[0]) or server.count('exited') >= 2


def test_sigttin_and_sigttou_move_a_dynamic_pools_minimum(tmp_path):
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '1', '--max-workers', '2',
                        '--idle-timeout', '60']) as server:
        server.address()
        server.wait_booted(1)
        server.send_signal(signal.SIGTTIN)
        server.wait_for_log(r'SIGTTIN: minimum raised to 2 workers \(at most 2\); 2 now')
        server.wait_booted(2)
        server.send_signal(signal.SIGTTIN)
        server.wait_for_log(r"SIGTTIN ignored: the pool's minimum is already --max-workers 2")
        server.send_signal(signal.SIGTTOU)
        server.wait_for_log(r'SIGTTOU: minimum lowered to 1; 1 worker now')
        server.wait_for_log(r'no longer needed by the pool')
        server.send_signal(signal.SIGTTOU)
        server.wait_for_log('SIGTTOU ignored: the pool is at its minimum of one worker')


def lines_in_order(log, *patterns):
    """The position of each pattern's first match, after the previous one's."""
    at = 0
    for pattern in patterns:
        match = re.compile(pattern, re.M).search(log, at)
        assert match, f'{pattern!r} not found after position {at}:\n{log}'
        at = match.end()


def test_recycling_starts_the_replacement_before_the_worker_stops_taking_requests():
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '1',
                        '--max-requests', '2']) as server:
        address = server.address()
        first = server.wait_booted(1)[0]
        statuses = []

        def ask():
            while len(statuses) < 200:      # bounded
                reply = get(address, '/pid')
                statuses.append(reply.status)
                if int(reply.body) != first:
                    return
        ask()
        assert set(statuses) == {200}
        server.wait_for_log(r'worker 1 \(pid \d+\) exited')
        lines_in_order(server.log,
                       rf'\[{first}\] \[INFO\] worker \(pid {first}\) served 2 requests '
                       r'\(--max-requests\); asking for a replacement',
                       r'worker 2 booted',
                       rf'worker 1 \(pid {first}\) replaced after --max-requests; stopping it '
                       r'gracefully',
                       rf'worker 1 \(pid {first}\) exited with status 0')


def test_max_requests_jitter_gives_each_worker_its_own_limit():
    with ServerProcess([APP, '--bind', '127.0.0.1:0', '--workers', '6', '--max-requests', '5',
                        '--max-requests-jitter', '20']) as server:
        server.address()
        server.wait_booted(6)
        wait_until(lambda: server.count('is replaced after') == 6, what='six limits logged')
        limits = [int(n) for n in re.findall(r'is replaced after (\d+) requests \(--max-requests 5,'
                                             r' --max-requests-jitter 20\)', server.log)]
    assert len(limits) == 6 and all(5 <= n <= 25 for n in limits)
    assert len(set(limits)) > 1     # six equal draws out of 21: about 1 in 4 million


GROW_APP = textwrap.dedent('''\
    import os
    kept = []

    def application(environ, start_response):
        # /grow?MIB keeps MIB more mebibytes in this worker.
        if environ.get('PATH_INFO') == '/grow':
            kept.append(bytearray(int(environ['QUERY_STRING']) << 20))
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [str(os.getpid()).encode()]
    ''')


def test_max_rss_replaces_a_worker_past_it_without_a_gap(tmp_path):
    (tmp_path / 'grower.py').write_text(GROW_APP)
    with ServerProcess(['grower', '--bind', '127.0.0.1:0', '--workers', '1', '--max-rss', '100',
                        '--chdir', str(tmp_path)]) as server:
        address = server.address()
        first = server.wait_booted(1)[0]
        assert int(get(address, '/').body) == first
        assert int(get(address, '/grow', query='150').body) == first
        server.wait_for_log(rf'worker 1 \(pid {first}\) uses \d+ MiB, past --max-rss 100; '
                            r'starting its replacement')
        server.wait_for_log(rf'worker 1 \(pid {first}\) exited')
        second = server.booted_pids()[1]
        assert int(get(address, '/').body) == second
        lines_in_order(server.log, r'past --max-rss 100', r'worker 2 booted',
                       rf'worker 1 \(pid {first}\) replaced: \d+ MiB resident, past --max-rss '
                       r'100; stopping it gracefully', rf'worker 1 \(pid {first}\) exited')


@pytest.mark.parametrize('args, says', [
    (['--workers', '3', '--max-workers', '2'], '--max-workers 2 is below --workers 3'),
    (['--workers', '0', '--max-workers', '2'], '--max-workers needs an arbiter'),
    (['--max-requests-jitter', '-1'], "'-1' is not a number of requests"),
    (['--max-rss', 'lots'], "'lots' is not a number of MiB"),
    (['--idle-timeout', '0'], "'0' is not a number of seconds (0.1 or more)"),
])
def test_bad_pool_options_are_one_line_and_exit_2(args, says, capsys):
    assert cli.fastcgi_main([APP, '--bind', '127.0.0.1:0', *args]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('gateway fastcgi: error:'), err
    assert says in err
