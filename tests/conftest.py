import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, 'tests')
for path in (REPO, TESTS):
    if path not in sys.path:
        sys.path.insert(0, path)
