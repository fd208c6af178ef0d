"""The local AWS emulator: moto's server (`moto_server`), with every DynamoDB call run one at a
time.

Why: moto serves requests on threads and applies a DynamoDB write in several steps (read the
item, check the condition, change it), so two writes to one item that overlap can lose one of
them while both report success — DynamoDB never does. Measured with 12 threads of
version-conditional `PutItem`s and 12 of `UpdateItem ADD` on one item with a 200-entry map
(moto 5.2.5, plain `moto_server`): 3,882 writes reported success, the item counted 3,880, and
its two counters (moved together by every write) disagreed by 4. For the gateway this is a
limit lease that a settlement removed coming back when another process's admission landed at
the same moment ("reservations never released" in tests/e2e/test_limits.py, three proxy
processes). With this lock the same run stores every write (docs/limits.md, "Emulator
caveats"). Other services are left concurrent (SQS long polls must not block the rest).

Usage: the same arguments as `moto_server` (`python infra/local/emulator.py -H 127.0.0.1 -p N`).
"""

import sys
import threading

from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_one_at_a_time = threading.Lock()
_call_action = DynamoHandler.call_action


def _serialized(self):
    with _one_at_a_time:
        return _call_action(self)


DynamoHandler.call_action = _serialized

if __name__ == "__main__":
    sys.exit(main())
